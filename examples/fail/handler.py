"""fail: raises, to show how a handler error reaches the caller (500, layer "function")."""


class InventoryError(RuntimeError):
    pass


def handle(req):
    raise InventoryError(f"no stock for {req.path or '/'}")
