"""withdeps: uses a package that only its own requirements.txt installs (not the platform's environment)."""

import tabulate


def handle(req):
    return {"tabulate": tabulate.__version__, "from": tabulate.__file__}
