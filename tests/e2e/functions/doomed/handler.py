"""doomed: fails (500) until the file named in the JSON body's "healed_by" exists; its async retries are short."""

import json
from pathlib import Path


def handle(req):
    marker = json.loads(req.body or b"{}").get("healed_by")
    if marker and Path(marker).exists():
        return {"healed": True}
    raise RuntimeError("still broken")
