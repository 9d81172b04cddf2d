"""hello: plain text, the smallest function there is."""

import os

GREETING = os.environ.get("GREETING", "Hello")


def handle(req):
    return f"{GREETING}, world!\n"
