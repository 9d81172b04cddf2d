"""Run zot-minimal on loopback with htpasswd (bcrypt) auth, its storage, config and log in one folder.

    with Zot(build.ensure(), folder).start() as zot:
        zot.address        # "127.0.0.1:PORT"
        zot.credentials    # (user, password)
        zot.auth_file      # a docker-style config.json with them (skopeo --authfile, $REGISTRY_AUTH_FILE)

With `tokens=TokenServer(...)` (tools/registry/tokens.py, started first) Zot uses the token flow instead: bearer auth
whose realm is that server, which takes the same user and password.

`start` returns once GET /v2/ answers 401 without credentials and 200 with them (or with a token); `stop` ends
the process it started (by PID: SIGTERM, then SIGKILL after a grace period). The bcrypt htpasswd file is written by
`htpasswd -iBc` (Debian's apache2-utils), the password fed on stdin so it never appears in a process list.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from tools.registry.tokens import TokenServer

READY_TIMEOUT = 30.0
STOP_GRACE = 10.0


class ZotError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_htpasswd(path: Path, user: str, password: str) -> None:
    """A one-user bcrypt htpasswd file (Zot accepts bcrypt only)."""
    tool = shutil.which("htpasswd")
    if tool is None:
        raise ZotError("htpasswd not found: install Debian's apache2-utils (it writes Zot's bcrypt htpasswd file)")
    done = subprocess.run(
        [tool, "-i", "-B", "-c", str(path), user], input=password, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ZotError(f"htpasswd failed ({done.returncode}): {done.stderr.strip()}")


def write_auth_file(path: Path, address: str, user: str, password: str) -> None:
    """A docker-style config.json holding the credentials for `address` (mode 0600)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.touch(mode=0o600)
    path.write_text(json.dumps({"auths": {address: {"auth": token}}}, indent=2) + "\n")


class Zot:
    """One zot-minimal process serving from `folder` (storage/, config.json, htpasswd, auth.json, zot.log)."""

    def __init__(
        self,
        binary: Path,
        folder: Path,
        *,
        user: str = "lf",
        password: str | None = None,
        tokens: TokenServer | None = None,
    ) -> None:
        self.binary = binary
        self.tokens = tokens
        self.folder = folder
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        if not self.port:
            raise ZotError("Zot is not started")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def credentials(self) -> tuple[str, str]:
        return self.user, self.password

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    @property
    def auth_file(self) -> Path:
        return self.folder / "auth.json"

    @property
    def log(self) -> Path:
        return self.folder / "zot.log"

    def _auth(self) -> dict[str, object]:
        if self.tokens is None:
            return {"htpasswd": {"path": str(self.folder / "htpasswd")}}
        bearer = {"realm": self.tokens.realm, "service": self.tokens.service, "cert": str(self.tokens.public_key)}
        return {"bearer": bearer}

    def config(self) -> dict[str, object]:
        return {
            "distSpecVersion": "1.1.1",
            "storage": {"rootDirectory": str(self.storage), "gc": False, "dedupe": False},
            "http": {
                "address": "127.0.0.1",
                "port": str(self.port),
                "auth": self._auth(),
            },
            "log": {"level": "info"},
        }

    def start(self, timeout: float = READY_TIMEOUT) -> Zot:
        if self.process is not None:
            raise ZotError("Zot is already started")
        if not self.binary.is_file():
            raise ZotError(f"no zot binary at {self.binary} (python -m tools.registry build)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        if self.tokens is None:
            write_htpasswd(self.folder / "htpasswd", self.user, self.password)
        else:
            self.tokens.users[self.user] = self.password
        self.port = free_port()
        config = self.folder / "config.json"
        config.write_text(json.dumps(self.config(), indent=2) + "\n")
        write_auth_file(self.auth_file, self.address, self.user, self.password)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait_ready(self, timeout: float) -> None:
        """Poll /v2/ until it answers 401 without credentials; then it must answer 200 with them."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise ZotError(
                        f"zot exited with {self.process.returncode} before serving; log:\n{self._log_tail()}"
                    )
                try:
                    anonymous = client.get(f"{self.url}/v2/")
                    if anonymous.status_code == 401:
                        break
                    last = f"GET /v2/ without credentials answered {anonymous.status_code}, expected 401"
                except httpx.TransportError as exc:
                    last = str(exc) or type(exc).__name__
                if time.monotonic() > deadline:
                    raise ZotError(f"zot not ready within {timeout}s ({last}); log:\n{self._log_tail()}")
                time.sleep(0.1)
            if self.tokens is None:
                authed = client.get(f"{self.url}/v2/", auth=(self.user, self.password))
            else:
                token = self.tokens.token(self.user, [])
                authed = client.get(f"{self.url}/v2/", headers={"Authorization": f"Bearer {token}"})
            if authed.status_code != 200:
                raise ZotError(
                    f"GET /v2/ with credentials answered {authed.status_code}, expected 200; log:\n{self._log_tail()}"
                )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_GRACE)

    def __enter__(self) -> Zot:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
