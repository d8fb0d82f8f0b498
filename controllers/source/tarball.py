"""Deterministic tar.gz artifacts of a checked-out tree.

Sorted entries, zero times, uid/gid 0, no user names, Flux's normalised modes and a gzip
header without name or time: the same tree always gives the same bytes and digest.
Symlinks stay only when they resolve inside the tree; anything else that is not a file
or directory is left out.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from tide.shared.artifact.errors import ArtifactError
from tide.shared.artifact.extract import check_symlink_target

DIR_MODE = 0o750
FILE_MODE = 0o600
EXEC_MODE = 0o700
COMPRESS_LEVEL = 6
DEFAULT_MAX_SIZE = 100 * 1024 * 1024

# (path components, is_dir) -> excluded?
Filter = Callable[[Sequence[str], bool], bool]


class ArtifactTooLarge(Exception):
    pass


@dataclass(frozen=True)
class Archive:
    digest: str  # sha256:<hex> of the tar.gz bytes
    size: int  # bytes of the tar.gz
    files: int
    content_size: int  # bytes of file content (what an extraction writes)


class _HashingWriter(io.RawIOBase):
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hash.update(data)
        self.out.write(data)
        self.size += len(data)
        return len(data)


class _BlockGzipWriter(io.RawIOBase):
    """gzip in fixed-size blocks, each its own gzip member, compressed on a thread pool.

    Concatenated members are one valid gzip stream (RFC 1952; Go's and Python's readers read
    them all). Block boundaries, level and headers are fixed, so the bytes stay deterministic.
    """

    BLOCK = 4 * 1024 * 1024

    def __init__(self, out: _HashingWriter, pool: ThreadPoolExecutor, window: int) -> None:
        self.out = out
        self.pool = pool
        self.window = window
        self.buf = bytearray()
        self.pending: deque[Future[bytes]] = deque()
        self.members = 0
        self.written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.written

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.written += len(data)
        self.buf += data
        while len(self.buf) >= self.BLOCK:
            self._submit(bytes(self.buf[: self.BLOCK]))
            del self.buf[: self.BLOCK]
        return len(data)

    def _submit(self, block: bytes) -> None:
        self.pending.append(self.pool.submit(gzip.compress, block, COMPRESS_LEVEL, mtime=0))
        self.members += 1
        while len(self.pending) > self.window:
            self.out.write(self.pending.popleft().result())

    def finish(self) -> None:
        if self.buf or not self.members:
            self._submit(bytes(self.buf))
            self.buf.clear()
        while self.pending:
            self.out.write(self.pending.popleft().result())


def _inside(root: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


class DeterministicTar:
    """The tar.gz writer both archive paths share: GNU tar, normalised headers, block gzip,
    sha256 of the bytes written. Entries must be added in sorted order by the caller."""

    def __init__(self, out_file: Path) -> None:
        self.workers = max(2, os.cpu_count() or 2)
        self._raw = out_file.open("wb")
        try:
            self._pool = ThreadPoolExecutor(max_workers=self.workers)
            self.hashing = _HashingWriter(self._raw)
            self._gz = _BlockGzipWriter(self.hashing, self._pool, window=self.workers * 2)
            self.tar = tarfile.open(fileobj=self._gz, mode="w", format=tarfile.GNU_FORMAT)
        except BaseException:
            self._raw.close()
            raise

    def __enter__(self) -> DeterministicTar:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None:
                self.tar.close()
                self._gz.finish()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._raw.close()

    def add_dir(self, name: str) -> None:
        self.tar.addfile(_info(name + "/", tarfile.DIRTYPE, DIR_MODE))

    def add_file(self, name: str, executable: bool, size: int, content: IO[bytes]) -> None:
        info = _info(name, tarfile.REGTYPE, EXEC_MODE if executable else FILE_MODE)
        info.size = size
        self.tar.addfile(info, content)

    def add_symlink(self, name: str, target: str) -> None:
        info = _info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)


def build_tarball(
    root: Path,
    out_file: Path,
    exclude: Filter | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Archive:
    """Write root's tree into out_file as a deterministic tar.gz; return digest and sizes.

    max_size caps the extracted size (sum of file sizes); 0 means no cap.
    """
    real_root = os.path.realpath(root)
    content_size = 0
    files = 0
    with DeterministicTar(out_file) as tar:

        def walk(directory: str, rel: tuple[str, ...]) -> None:
            nonlocal content_size, files
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name.encode("utf-8", "surrogateescape"))
            for entry in entries:
                parts = (*rel, entry.name)
                if not rel and entry.name == ".git":
                    continue
                name = "/".join(parts)
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if exclude is None or not exclude(parts, True):
                        tar.add_dir(name)
                    walk(entry.path, parts)
                elif stat.S_ISREG(st.st_mode):
                    if exclude is not None and exclude(parts, False):
                        continue
                    content_size += st.st_size
                    check_size(content_size, max_size)
                    with open(entry.path, "rb") as f:
                        tar.add_file(name, bool(st.st_mode & stat.S_IXUSR), st.st_size, f)
                    files += 1
                elif stat.S_ISLNK(st.st_mode):
                    if exclude is not None and exclude(parts, False):
                        continue
                    target = os.readlink(entry.path)
                    try:
                        check_symlink_target(PurePosixPath(name), target)
                    except ArtifactError:
                        continue
                    if not _inside(real_root, entry.path):
                        continue
                    tar.add_symlink(name, target)
                    files += 1

        walk(str(root), ())
    return Archive(f"sha256:{tar.hashing.hash.hexdigest()}", tar.hashing.size, files, content_size)


def check_size(content_size: int, max_size: int) -> None:
    if max_size and content_size > max_size:
        raise ArtifactTooLarge(f"artifact size exceeds the limit of {max_size} bytes when extracted")


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
