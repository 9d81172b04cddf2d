"""A callback receiver that verifies LiteFunctions' signatures (docs/operations.md, "Signed callbacks").

Standalone, standard library only: copy it, or take `verify` into your own server.

    lf callbacks key -n default            # the key(s) that sign the namespace's callbacks now
    LF_CALLBACK_SECRETS=<secret>[,<secret>] python callback_receiver.py --port 9000

Every callback (and CloudEvent to a sink) carries `Lf-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`: each
`v1` is HMAC-SHA256 over `{t}.{body}` with one signing key. During a key rotation there are two `v1`, one per
key, so holding either key is enough; give this receiver both while you move over. A request is accepted (200)
when one `v1` matches one of your secrets and `t` is within `TOLERANCE_S` of your clock (a replayed old request
is refused), otherwise refused (401). Deduplicate by `Lf-Call-Id`: a callback may arrive more than once.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 300
MAX_BODY = 16 * 1024 * 1024


def verify(header: str, body: bytes, secrets: list[bytes], now: float, tolerance_s: float = TOLERANCE_S) -> bool:
    """True when `header` (the Lf-Signature value) signs `body` with one of `secrets`, recently enough."""
    timestamp = None
    signatures = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance_s:
        return False
    for secret in secrets:
        expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, signature) for signature in signatures):
            return True
    return False


class Receiver(BaseHTTPRequestHandler):
    secrets: list[bytes] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.answer(413, "too large")
            return
        body = self.rfile.read(length)
        if not verify(self.headers.get("Lf-Signature", ""), body, self.secrets, time.time()):
            self.answer(401, "bad signature")
            return
        call_id = self.headers.get("Lf-Call-Id", "")
        event_type = self.headers.get("ce-type")  # a CloudEvent (binary mode) from a function's spec.async.sink
        print(json.dumps({"callId": call_id, "type": event_type or "callback", "bytes": len(body)}), flush=True)
        self.answer(200, "ok")

    def answer(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0: any free port (printed)")
    args = parser.parse_args()
    secrets = [s.strip().encode() for s in os.environ.get("LF_CALLBACK_SECRETS", "").split(",") if s.strip()]
    if not secrets:
        print("set LF_CALLBACK_SECRETS to the secret(s) `lf callbacks key` prints", file=sys.stderr)
        return 2
    Receiver.secrets = secrets
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    print(f"listening on http://{args.host}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
