"""Safe extraction of artifact tarballs.

The rules follow Flux's untar: no absolute paths, no `..`, no backslashes, only regular
files, directories and symlinks that resolve inside the destination, and a cap on the
extracted size. Anything else makes the whole artifact an error; nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath
from typing import Literal

from tide.shared.artifact.errors import ArtifactError, TarHeaderTooLarge, TooManyEntries

# Flux's default for untar: 100 MiB once extracted.
DEFAULT_MAX_EXTRACTED_SIZE = 100 * 1024 * 1024
# Empty files cost an inode and a tar header but nothing against the size cap: 60,000 of them
# fit in 363 KiB of gzip. Entries are files, directories and symlinks.
DEFAULT_MAX_ENTRIES = 50_000
# Go's archive/tar refuses pax and GNU long-name records above 1 MiB; Python's tarfile reads
# them whole (and a chain of them recursively) before anything else can look at the member.
MAX_HEADER_BYTES = 1 << 20
MAX_HEADER_CHAIN = 8

_HEADER_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member parser with the size of extended headers checked from the 512-byte
    block that announces them, before their data is read. Per member, the chain of extended
    headers in front of it is capped in number and bytes; global pax headers (kept for the
    whole archive) in bytes over the archive. Sparse files, whose maps tarfile also reads
    without a bound, are refused."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        state: dict[str, int] = archive.__dict__.setdefault("_tide_headers", {})
        if self.type in _HEADER_TYPES:
            state["chain"] = state.get("chain", 0) + 1
            state["bytes"] = state.get("bytes", 0) + self.size
            if self.type == tarfile.XGLTYPE:
                state["global"] = state.get("global", 0) + self.size
            if (
                state["chain"] > MAX_HEADER_CHAIN
                or state["bytes"] > MAX_HEADER_BYTES
                or state.get("global", 0) > MAX_HEADER_BYTES
            ):
                raise TarHeaderTooLarge(
                    f"tar extended header too large: {self.size} bytes in a chain of {state['chain']} "
                    f"(limit {MAX_HEADER_BYTES} bytes, {MAX_HEADER_CHAIN} headers)"
                )
        else:
            state["chain"] = state["bytes"] = 0
            if self.type == tarfile.GNUTYPE_SPARSE:
                raise ArtifactError(f"unsupported sparse file in tar: {self.name!r}")
        return super()._proc_member(archive)  # type: ignore[misc, no-any-return]

    def _refuse_sparse(self, *args: object) -> None:
        raise ArtifactError("unsupported sparse file in tar (pax GNU.sparse)")

    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _refuse_sparse


def open_tar(path: Path, mode: Literal["r:*", "r:gz"] = "r:*") -> tarfile.TarFile:
    """tarfile.open for untrusted archives: extended headers bounded (see _BoundedTarInfo)."""
    return tarfile.open(path, mode=mode, tarinfo=_BoundedTarInfo)


def check_entries(count: int, max_entries: int, what: str = "artifact") -> None:
    """Refuse the count-th entry of a tree when it is over max_entries (0: no limit)."""
    if max_entries and count > max_entries:
        raise TooManyEntries(
            f"{what} has more than the maximum of {max_entries} entries (files, directories, symlinks)"
        )


def check_member_name(name: str) -> PurePosixPath:
    """Return the relative path of a tar member, or raise if it could escape the root."""
    if not name or "\\" in name or "\x00" in name:
        raise ArtifactError(f"illegal file path in artifact: {name!r}")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise ArtifactError(f"illegal absolute path in artifact: {name!r}")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ArtifactError(f"illegal path traversal in artifact: {name!r}")
    if not parts:
        return PurePosixPath(".")
    return PurePosixPath(*parts)


def check_symlink_target(member: PurePosixPath, target: str) -> None:
    """Reject absolute symlink targets and targets that leave the root lexically."""
    if not target or target.startswith("/") or "\\" in target or "\x00" in target:
        raise ArtifactError(f"illegal symlink target in artifact: {member} -> {target!r}")
    depth = len(member.parts) - 1
    for part in PurePosixPath(target).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                raise ArtifactError(f"symlink escapes the artifact root: {member} -> {target!r}")
        elif part not in ("", "."):
            depth += 1


def _inside(root: Path, path: str) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def extract_tarball(
    archive: Path,
    dest_dir: Path,
    max_size: int = DEFAULT_MAX_EXTRACTED_SIZE,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> Path:
    """Extract a .tar.gz into dest_dir (created if missing) following the safety rules.

    On any error dest_dir is removed again and ArtifactError raised. max_entries 0: no limit.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        _extract(archive, dest_dir, max_size, max_entries)
    except ArtifactError:
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise ArtifactError(f"corrupt artifact: {exc}") from exc
    return dest_dir


def _extract(archive: Path, dest_dir: Path, max_size: int, max_entries: int) -> None:
    total = 0
    symlinks: list[tuple[PurePosixPath, str]] = []
    seen: set[PurePosixPath] = set()
    with open_tar(archive, mode="r:gz") as tar:
        for member in tar:
            rel = check_member_name(member.name)
            if rel == PurePosixPath("."):
                continue
            check_entries(len(seen) + 1, max_entries)
            if rel in seen:
                raise ArtifactError(f"duplicate path in artifact: {rel}")
            seen.add(rel)
            target = dest_dir / rel
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o755)
                continue
            if member.issym():
                check_symlink_target(rel, member.linkname)
                symlinks.append((rel, member.linkname))
                continue
            if not member.isreg():
                raise ArtifactError(f"unsupported entry type in artifact: {rel}")
            total += member.size
            if total > max_size:
                raise ArtifactError(f"artifact exceeds the maximum extracted size of {max_size} bytes")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not _inside(dest_dir, str(target.parent)):
                raise ArtifactError(f"illegal path in artifact: {rel}")
            source = tar.extractfile(member)
            if source is None:
                raise ArtifactError(f"unreadable entry in artifact: {rel}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
            fd = os.open(target, flags, mode)
            with os.fdopen(fd, "wb") as out, source:
                shutil.copyfileobj(source, out, 1024 * 1024)
    # Symlinks last, so no file is ever written through one; then prove none escapes.
    for rel, link in symlinks:
        path = dest_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(dest_dir, str(path.parent)):
            raise ArtifactError(f"illegal path in artifact: {rel}")
        os.symlink(link, path)
    for rel, link in symlinks:
        if not _inside(dest_dir, str(dest_dir / rel)):
            raise ArtifactError(f"symlink escapes the artifact root: {rel} -> {link!r}")
