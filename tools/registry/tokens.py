"""A small token service for the distribution spec's token flow, so Zot's bearer auth can be run for real.

Zot with `"auth": {"bearer": {"realm": …, "service": …, "cert": KEY.pem}}` answers 401 with
`WWW-Authenticate: Bearer realm=…,service=…,scope=…` and accepts JWTs signed by the key whose public half is
KEY.pem, granting what their `access` claim lists (docker's token format). This service checks HTTP basic
credentials at GET /token?service=…&scope=repository:NAME:ACTIONS and issues an Ed25519-signed (EdDSA) JWT granting
the requested repository scopes; it records what it was asked for (`issued`) so tests can see the flow happen.
It runs in a thread of the test process on 127.0.0.1 (a free port) and stops with `stop()`.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TOKEN_SECONDS = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """`repository:NAME:pull,push` -> ("repository", NAME, ["pull", "push"]); None for anything else."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind != "repository" or not name or not actions:
        return None
    return kind, name, [action for action in actions.split(",") if action]


class TokenServer:
    def __init__(self, folder: Path, users: dict[str, str], *, service: str = "lf-zot") -> None:
        self.folder = folder
        self.users = dict(users)
        self.service = service
        self.issued: list[tuple[str, list[str]]] = []
        """(user, scopes) of every token handed out."""
        self._key = Ed25519PrivateKey.generate()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def public_key(self) -> Path:
        """The PEM public key Zot verifies tokens with (its bearer `cert` setting)."""
        return self.folder / "token-key.pem"

    @property
    def realm(self) -> str:
        if self._server is None:
            raise RuntimeError("the token server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def token(self, user: str, scopes: list[str]) -> str:
        """A signed JWT granting `scopes` (repository scopes; others are granted nothing)."""
        now = int(time.time())
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is not None:
                kind, name, actions = parsed
                access.append({"type": kind, "name": name, "actions": actions})
        header = {"alg": "EdDSA", "typ": "JWT"}
        claims = {
            "iss": "lf-token-server",
            "sub": user,
            "aud": self.service,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_SECONDS,
            "access": access,
        }
        signing_input = ".".join(_b64url(json.dumps(part).encode()) for part in (header, claims))
        return f"{signing_input}.{_b64url(self._key.sign(signing_input.encode()))}"

    def _user(self, header: str) -> str | None:
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except ValueError:
            return None
        return user if user in self.users and self.users[user] == password else None

    def start(self) -> TokenServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.public_key.write_bytes(
            self._key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: HTTPStatus, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == HTTPStatus.UNAUTHORIZED:
                    self.send_header("WWW-Authenticate", 'Basic realm="lf-token-server"')
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/token":
                    self._reply(HTTPStatus.NOT_FOUND, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
                    return
                query = parse_qs(url.query)
                if query.get("service", [""])[0] != owner.service:
                    message = f"unknown service {query.get('service')}"
                    self._reply(HTTPStatus.BAD_REQUEST, {"errors": [{"code": "DENIED", "message": message}]})
                    return
                user = owner._user(self.headers.get("Authorization", ""))
                if user is None:
                    error = {"code": "UNAUTHORIZED", "message": "bad credentials"}
                    self._reply(HTTPStatus.UNAUTHORIZED, {"errors": [error]})
                    return
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                owner.issued.append((user, scopes))
                token = owner.token(user, scopes)
                self._reply(HTTPStatus.OK, {"token": token, "access_token": token, "expires_in": TOKEN_SECONDS})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="lf-token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
