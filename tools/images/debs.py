"""Root filesystems from Debian's packages, distroless style: resolve, download, verify and unpack .debs.

No maintainer script runs and no package database is written: a package's files are read from its data tar
(`dpkg-deb --fsys-tarfile`) and become layer entries. What a postinst would have generated is written here where
an image needs it (the CA bundle: `ca_bundle`). Packages that only matter to a system that runs dpkg, a shell or
an init (debconf, perl, adduser, dpkg itself, ...) are never pulled in (`NEVER`).

Packages come from the apt sources of this machine (Debian 12): `apt-cache show` gives each one's version,
dependencies and SHA256, `apt-get download` fetches it into the cache, and the SHA256 is checked before use.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lf_controlplane.images.layers import Entry, normalized

NEVER = frozenset(
    {
        "adduser",
        "base-files",
        "base-passwd",
        "bash",
        "coreutils",
        "dash",
        "debconf",
        "debconf-2.0",
        "debianutils",
        "dpkg",
        "init-system-helpers",
        "install-info",
        "libc-bin",
        "libllvm14",  # PostgreSQL's JIT provider only (jit is off in the image)
        "locales",
        "login",
        "logrotate",
        "lsb-base",
        "passwd",
        "openssl",  # update-ca-certificates only: the bundle is written without it
        "perl",
        "perl-base",
        "postgresql-client-common",
        "postgresql-common",
        "procps",
        "sensible-utils",
        "ssl-cert",
        "sysvinit-utils",
        "systemd",
        "systemd-sysv",
        "ucf",
    }
)
"""Never installed, even when a dependency names them: they serve dpkg, shells and init systems, not a container."""

DROPPED = (
    "etc/cron.d",
    "etc/cron.daily",
    "etc/init.d",
    "etc/logrotate.d",
    "etc/systemd",
    "usr/lib/systemd",
    "usr/share/bug",
    "usr/share/doc-base",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/locale",
    "usr/share/man",
    "usr/share/menu",
    "var/cache",
    "var/log",
)
"""Paths (with everything below) left out of every image: documentation, init and cron files, caches, logs."""

MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""Top-level directories that are symlinks into /usr (Debian 12's merged /usr); package files under them move."""

_FIELD = re.compile(r"^([A-Za-z0-9-]+):\s?(.*)$")
_NAME = re.compile(r"^([a-z0-9][a-z0-9+.-]*)")


class DebError(RuntimeError):
    """A package that cannot be resolved, downloaded or verified (the message names it)."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str
    filename: str
    depends: tuple[tuple[str, ...], ...]
    """Depends and Pre-Depends: each a group of alternatives, package names only."""


def _parse_depends(text: str) -> tuple[tuple[str, ...], ...]:
    groups = []
    for group in filter(None, (g.strip() for g in text.split(","))):
        names = []
        for alternative in group.split("|"):
            found = _NAME.match(alternative.strip())
            if found:
                names.append(found.group(1))
        if names:
            groups.append(tuple(names))
    return tuple(groups)


def parse_stanzas(text: str) -> dict[str, Package]:
    """`apt-cache show` output as packages by name (the first stanza of a name wins: the candidate version)."""
    found: dict[str, Package] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        last = ""
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and last:
                fields[last] += " " + line.strip()
                continue
            match = _FIELD.match(line)
            if match:
                last = match.group(1)
                fields[last] = match.group(2)
        if "Package" not in fields or fields["Package"] in found:
            continue
        depends = ", ".join(filter(None, (fields.get("Pre-Depends", ""), fields.get("Depends", ""))))
        found[fields["Package"]] = Package(
            name=fields["Package"],
            version=fields.get("Version", ""),
            sha256=fields.get("SHA256", ""),
            filename=fields.get("Filename", ""),
            depends=_parse_depends(depends),
        )
    return found


_SHOWN: dict[str, Package | None] = {}
"""What apt-cache said about each name in this process (None: no such package); each call costs ~0.4 s."""


def _show(names: Iterable[str]) -> dict[str, Package]:
    wanted = sorted(set(names))
    asked = [name for name in wanted if name not in _SHOWN]
    if asked:
        done = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", *asked], capture_output=True, text=True, check=False
        )
        found = parse_stanzas(done.stdout)
        if done.returncode != 0 and not found and len(asked) > 1:  # one unknown name fails the whole call
            for name in asked:
                found.update(_show([name]))
        for name in asked:
            _SHOWN[name] = found.get(name)
    return {name: package for name in wanted if (package := _SHOWN.get(name)) is not None}


def resolve(roots: Sequence[str], *, provided: Iterable[str] = (), never: Iterable[str] = NEVER) -> list[Package]:
    """`roots` and everything they depend on, minus `never` and minus `provided` (already in a lower layer).

    Of alternatives, the first one that is chosen, provided or excluded satisfies the group; else the first that
    exists. Raises DebError naming a root or a dependency that no apt source has (run `apt-get update`)."""
    skip = set(never)
    have = set(provided)
    chosen: dict[str, Package] = {}
    frontier = [r for r in roots if r not in have]
    known = _show(frontier)
    for root in frontier:
        if root not in known:
            raise DebError(f"Debian package {root!r} not found by apt-cache (is `apt-get update` done?)")
    while frontier:
        known.update(_show(n for n in frontier if n not in known))
        level = [known[n] for n in frontier if n in known and n not in chosen and n not in have and n not in skip]
        for package in level:
            chosen[package.name] = package
        asked = {alt for package in level for group in package.depends for alt in group}
        known.update(_show(a for a in asked if a not in known and a not in skip))
        following: list[str] = []
        for package in level:
            for group in package.depends:
                if any(alt in chosen or alt in have or alt in skip or alt in following for alt in group):
                    continue
                pick = next((alt for alt in group if alt in known), None)
                if pick is None:
                    raise DebError(f"{package.name}: no package satisfies the dependency {' | '.join(group)}")
                following.append(pick)
        frontier = following
    return [chosen[name] for name in sorted(chosen)]


def fetch(packages: Iterable[Package], cache: Path) -> list[Path]:
    """The .deb of each package, downloaded into `cache` once and verified against apt's SHA256."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    missing = []
    for package in packages:
        path = cache / PurePosixPath(package.filename).name
        paths.append(path)
        if not (path.is_file() and _sha256(path) == package.sha256):
            missing.append(package)
    if missing:
        argv = ["apt-get", "download", "-q", *(f"{p.name}={p.version}" for p in missing)]
        done = subprocess.run(argv, cwd=cache, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DebError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
        for package in missing:
            path = cache / PurePosixPath(package.filename).name
            arch = path.name.rsplit("_", 1)[-1]
            saved = cache / f"{package.name}_{package.version.replace(':', '%3a')}_{arch}"  # apt keeps the epoch
            if not path.is_file() and saved.is_file():
                saved.replace(path)
            if not path.is_file():
                raise DebError(f"apt-get download gave no {path.name} for {package.name}={package.version}")
            if _sha256(path) != package.sha256:
                path.unlink()
                raise DebError(f"{path.name}: SHA256 does not match apt's {package.sha256}")
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _placed(name: str) -> str | None:
    """Where a package member lands (merged /usr applied), or None when it is dropped."""
    path = normalized(name) if name.strip("./") else ""
    if not path:
        return None
    first, _, rest = path.partition("/")
    if first in MERGED_USR:
        path = f"usr/{path}"
    for dropped in DROPPED:
        if path == dropped or path.startswith(f"{dropped}/"):
            return None
    if path.startswith("usr/share/doc/") and not (path.endswith("/copyright") or path.count("/") == 3):
        return None
    return path


def unpack(debs: Iterable[Path]) -> dict[str, Entry]:
    """The entries of the packages' data, by path (a later package's file replaces an earlier one's; hard links
    become copies). Ownership and permission bits are kept as the packages say."""
    entries: dict[str, Entry] = {}
    for deb in debs:
        done = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=False)
        if done.returncode != 0:
            raise DebError(f"dpkg-deb --fsys-tarfile {deb.name} failed: {done.stderr.decode(errors='replace')}")
        contents: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as tar:
            for member in tar:
                path = _placed(member.name)
                if path is None:
                    continue
                mode = member.mode & 0o7777
                if member.isdir():
                    if path not in entries:
                        entries[path] = Entry(path, "dir", mode, member.uid, member.gid)
                elif member.issym():
                    entries[path] = Entry(path, "symlink", 0o777, member.uid, member.gid, target=member.linkname)
                elif member.islnk():
                    target = _placed(member.linkname)
                    if target is None or target not in contents:
                        raise DebError(f"{deb.name}: hard link {member.name} to a file not unpacked before it")
                    contents[path] = contents[target]
                    entries[path] = Entry(path, "file", mode, member.uid, member.gid, data=contents[target])
                elif member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    data = extracted.read()
                    contents[path] = data
                    entries[path] = Entry(path, "file", mode, member.uid, member.gid, data=data)
    return entries
