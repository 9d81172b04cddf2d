"""JSON echo: parses the body and answers a document built from it."""


async def handle(req):
    doc = req.json()
    return {"items": len(doc.get("items", [])), "echo": doc}
