"""Reproducible OCI image layers: the same files give the same bytes, so the same digest, on any machine.

A layer is a tar of entries (files, directories, symlinks) compressed with gzip. What would make two builds of the
same files differ is fixed here: entries are sorted by path, every modification time is `mtime` (0 by default, or
SOURCE_DATE_EPOCH's value), owners are numeric (`uid`/`gid`, no user or group names), permissions are kept only as
the regular bits (0o7777), the tar is PAX, and gzip writes no file name and a zero timestamp. Directories above an
entry are added when missing, so an unpacker never invents them with its own modes.

Layers are streamed to files (a dependency layer may hold hundreds of MiB), hashing as they are written: the
uncompressed digest is the config's `diff_id`, the compressed one the manifest's layer digest.

Written here rather than with umoci or buildah: both take a root filesystem on disk and their output depends on
its timestamps and on the tool's version; this writer takes entries from anywhere (a function's folder, a wheel
install, a built binary) and its output depends on nothing else.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
_CHUNK = 1 << 20
_GZIP_LEVEL = 6


class LayerError(ValueError):
    """An entry that cannot go into a layer (an absolute or escaping path, a duplicate, an unsupported file)."""


@dataclass(frozen=True)
class Entry:
    """One member of a layer. `source` (a file on disk) or `data` gives a file's content; `target` a symlink's."""

    path: str
    """Where it lands in the image, relative to `/` (e.g. `function/handler.py`)."""
    kind: str = "file"
    """`file`, `dir` or `symlink`."""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    source: Path | None = None
    data: bytes | None = None
    target: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", normalized(self.path))
        if self.kind not in ("file", "dir", "symlink"):
            raise LayerError(f"{self.path}: unsupported entry kind {self.kind!r}")
        if self.kind == "file" and (self.source is None) == (self.data is None):
            raise LayerError(f"{self.path}: a file needs exactly one of source or data")
        if self.kind == "symlink" and not self.target:
            raise LayerError(f"{self.path}: a symlink needs a target")


@dataclass(frozen=True)
class Layer:
    """A written layer: its gzip blob on disk and the two digests an image needs."""

    blob: Path
    digest: str
    """`sha256:…` of the compressed blob (the manifest's layer descriptor)."""
    size: int
    diff_id: str
    """`sha256:…` of the uncompressed tar (the config's `rootfs.diff_ids`)."""
    media_type: str = MEDIA_TYPE


def normalized(path: str) -> str:
    """`path` as a layer member name: relative, `/`-separated, no `.`/`..` parts; refuses what would escape `/`."""
    pure = PurePosixPath(path.replace("\\", "/"))
    parts = [part for part in pure.parts if part not in ("", ".", "/")]
    if not parts or ".." in parts:
        raise LayerError(f"not a path inside the image: {path!r}")
    return "/".join(parts)


def entries_from_dir(
    root: Path,
    dest: str,
    *,
    uid: int = 0,
    gid: int = 0,
    exclude: Iterable[str] = (),
) -> list[Entry]:
    """The files, directories and symlinks under `root`, placed under `dest` in the image, owned by `uid`:`gid`.

    `exclude` holds names (any component) left out with everything below them, e.g. `__pycache__`, `.git`.
    Symlinks are kept as links; their targets are not followed. Other file types (sockets, devices) are refused.
    """
    skip = set(exclude)
    dest = normalized(dest)
    entries = [Entry(dest, "dir", 0o755, uid, gid)]
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        here = Path(folder)
        for name in sorted([*dirs, *(f for f in files if f not in skip)]):
            path = here / name
            info = path.lstat()
            inside = f"{dest}/{path.relative_to(root).as_posix()}"
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entries.append(Entry(inside, "symlink", 0o777, uid, gid, target=os.readlink(path)))
            elif stat.S_ISDIR(info.st_mode):
                entries.append(Entry(inside, "dir", mode, uid, gid))
            elif stat.S_ISREG(info.st_mode):
                entries.append(Entry(inside, "file", mode, uid, gid, source=path))
            else:
                raise LayerError(f"{path}: not a regular file, directory or symlink")
    return entries


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """`entries` sorted by path, each missing parent directory added (0o755, root-owned); duplicates refused."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        if entry.path in by_path:
            raise LayerError(f"{entry.path}: in the layer twice")
        by_path[entry.path] = entry
    for path in list(by_path):
        ancestor = PurePosixPath(path).parent
        while str(ancestor) not in (".", ""):
            by_path.setdefault(str(ancestor), Entry(str(ancestor), "dir", 0o755))
            ancestor = ancestor.parent
    for path in by_path:
        parent = str(PurePosixPath(path).parent)
        if parent != "." and by_path[parent].kind != "dir":
            raise LayerError(f"{path}: its parent {parent} is not a directory")
    return [by_path[path] for path in sorted(by_path)]


def write_layer(entries: Iterable[Entry], blob_dir: Path, *, mtime: int | None = None) -> Layer:
    """Write the layer of `entries` as a gzip blob named by its digest in `blob_dir` (an OCI layout's
    `blobs/sha256`); the same entries always give the same blob."""
    if mtime is None:
        mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    blob_dir.mkdir(parents=True, exist_ok=True)
    raw = _Hashing()
    out = tempfile.NamedTemporaryFile(dir=blob_dir, prefix=".layer-", suffix=".partial", delete=False)
    partial = Path(out.name)
    try:
        with out:
            compressed = _Hashing(out)
            with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=_GZIP_LEVEL) as gz:
                tee = _Tee(gz, raw)
                with tarfile.open(fileobj=tee, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for entry in with_parents(entries):
                        _add(tar, entry, mtime)
        digest = f"sha256:{compressed.sha.hexdigest()}"
        blob = blob_dir / digest.removeprefix("sha256:")
        partial.replace(blob)
    finally:
        partial.unlink(missing_ok=True)
    return Layer(blob=blob, digest=digest, size=compressed.size, diff_id=f"sha256:{raw.sha.hexdigest()}")


def members(blob: Path) -> Iterator[tarfile.TarInfo]:
    """The tar members of a gzip layer blob, in order."""
    with tarfile.open(blob, mode="r:gz") as tar:
        yield from tar


def _add(tar: tarfile.TarFile, entry: Entry, mtime: int) -> None:
    info = tarfile.TarInfo(entry.path)
    info.mtime = mtime
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mode = entry.mode & 0o7777
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        tar.addfile(info)
    elif entry.data is not None:
        info.size = len(entry.data)
        tar.addfile(info, io.BytesIO(entry.data))
    else:
        assert entry.source is not None
        with entry.source.open("rb") as source:
            info.size = os.fstat(source.fileno()).st_size
            tar.addfile(info, source)


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to `out` (or nowhere)."""

    def __init__(self, out: IO[bytes] | None = None) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)


class _Tee(io.RawIOBase):
    """What tarfile writes goes to gzip and, uncompressed, to a hash (the layer's diff_id)."""

    def __init__(self, first: IO[bytes] | gzip.GzipFile, second: _Hashing) -> None:
        self.first, self.second = first, second

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.first.write(data)
        self.second.write(data)
        return len(data)
