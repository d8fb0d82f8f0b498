"""The consumer side of source artifacts: find a source's artifact, check it out into a fresh directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tide.shared.api.meta import Artifact
from tide.shared.artifact import (
    DEFAULT_MAX_ENTRIES,
    ArtifactError,
    ArtifactNotFound,
    check_artifact_url,
    fetch_artifact,
)
from tide.shared.artifact.client import RETRIES

SOURCE_GROUP_VERSION = "source.toolkit.fluxcd.io/v1"
SERVED_SOURCE_KINDS = ("GitRepository", "OCIRepository", "Bucket", "ExternalArtifact")
_DIGEST = re.compile(r"[a-z0-9]+:[0-9a-f]{32,128}")


# What a checkout's caller will read of a tree: relative paths, or None for all of it.
Select = Callable[[Path], Sequence[str] | None]


class SourceNotReady(Exception):
    """The source is missing or has no artifact yet: retry later, not a user error in this object."""


def artifact_of(source: Mapping[str, Any] | None) -> Artifact | None:
    """The source's advertised artifact; None while it has none (or one a consumer cannot use)."""
    raw = ((source or {}).get("status") or {}).get("artifact")
    if not isinstance(raw, dict) or not raw.get("url"):
        return None
    try:
        return Artifact.model_validate(raw)
    except ValidationError:
        return None


async def download(
    artifact: Artifact,
    dest: Path | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    retries: int = RETRIES,
) -> Path:
    """The artifact extracted into dest (default: a new temporary directory the caller removes);
    connection errors and 5xx answers are retried `retries` times (--http-retry)."""
    dest = dest or Path(tempfile.mkdtemp(prefix="tide-kustomize-"))
    try:
        await fetch_artifact(
            artifact.url, artifact.digest or "", dest, max_entries=max_entries, retries=retries
        )
    except ArtifactNotFound as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise SourceNotReady(f"artifact not found at {artifact.url}: {err}") from err
    except ArtifactError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def link_tree(src: Path, dest: Path) -> None:
    """A copy of src in dest whose files are hard links (copies where linking is refused).
    Writers in the copy replace files (new inode), never write into them, so src stays pristine."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target_dir = dest if rel == "." else dest / rel
        for name in dirnames:
            source = os.path.join(dirpath, name)
            if os.path.islink(source):
                os.symlink(os.readlink(source), target_dir / name)
            else:
                (target_dir / name).mkdir()
        for name in filenames:
            source = os.path.join(dirpath, name)
            if os.path.islink(source):
                os.symlink(os.readlink(source), target_dir / name)
                continue
            try:
                os.link(source, target_dir / name)
            except OSError:
                shutil.copy2(source, target_dir / name)


def link_paths(src: Path, dest: Path, paths: Sequence[str]) -> None:
    """link_tree of only `paths` of src (relative; a directory whole), at the same places in dest."""
    for rel in paths:
        source, target = src / rel, dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            target.mkdir()
            link_tree(source, target)
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def replace_file(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write path as a new file (a new inode): a hard-linked original is left as it was."""
    fd, tmp = tempfile.mkstemp(prefix=".tide-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _relink(tree: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    link_tree(tree, dest)


async def _run(*argv: str) -> bool:
    """Run a coreutils command (C speed, and the event loop's thread stays free); False if it failed."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return False
    try:
        return await proc.wait() == 0
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise


async def remove_tree(path: Path) -> None:
    """Remove a checkout; shutil.rmtree where `rm` is missing or fails."""
    if not await _run("rm", "-rf", "--", str(path)):
        await asyncio.to_thread(shutil.rmtree, path, True)


class ArtifactCache:
    """Extracted artifacts by digest. Kustomizations of one source revision (Flux's usual layout: one
    GitRepository, many Kustomizations) download and extract it once; each build then gets a private
    copy made of hard links. Content-addressed, so sharing across namespaces reveals nothing.
    At most `keep` trees are kept, least recently used first out, never one being copied."""

    def __init__(
        self,
        root: Path | None = None,
        keep: int = 8,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        retries: int = RETRIES,
        storage: Sequence[str] | None = None,
    ) -> None:
        self._root = root
        self.keep = keep
        self.max_entries = max_entries
        self.retries = retries
        self.storage = storage
        self._trees: OrderedDict[str, Path] = OrderedDict()
        self._users: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="tide-artifacts-"))
        elif not self._root.is_dir():
            self._root.mkdir(parents=True)
        return self._root

    async def checkout(self, artifact: Artifact, select: Select | None = None) -> Path:
        """A new directory holding the artifact's files; the caller removes it. select(tree) names the
        paths (relative, directories whole) the caller will read, or None for all: only those are
        copied."""
        digest = artifact.digest or ""
        if not self._cached(artifact):
            return await download(artifact, max_entries=self.max_entries, retries=self.retries)
        tree = await self._acquire(digest, artifact)
        try:
            paths = await asyncio.to_thread(select, tree) if select is not None else None
            dest = Path(tempfile.mkdtemp(prefix="tide-kustomize-", dir=self.root))
            try:
                if paths is not None:
                    await asyncio.to_thread(link_paths, tree, dest, paths)
                elif not await _run("cp", "-a", "-l", f"{tree}/.", str(dest)):
                    await asyncio.to_thread(_relink, tree, dest)
            except BaseException:
                await remove_tree(dest)
                raise
        finally:
            await self._release(digest)
        return dest

    @contextlib.asynccontextmanager
    async def borrow(self, artifact: Artifact) -> AsyncIterator[Path]:
        """The artifact's files for a reader that writes nothing: the cached tree itself, kept while
        borrowed, no copy (a private download when the artifact is not cached)."""
        digest = artifact.digest or ""
        if not self._cached(artifact):
            tree = await download(artifact, max_entries=self.max_entries, retries=self.retries)
            try:
                yield tree
            finally:
                await remove_tree(tree)
            return
        tree = await self._acquire(digest, artifact)
        try:
            yield tree
        finally:
            await self._release(digest)

    def _cached(self, artifact: Artifact) -> bool:
        """Whether the artifact goes through the cache (it has a digest to key it by). Its URL is
        checked first (--source-storage-addr): no tree is handed out for a refused URL."""
        if self.storage is not None:
            check_artifact_url(artifact.url, self.storage)
        return self.keep > 0 and bool(_DIGEST.fullmatch(artifact.digest or ""))

    async def _release(self, digest: str) -> None:
        self._users[digest] = self._users.get(digest, 1) - 1
        await self._evict()

    async def _acquire(self, digest: str, artifact: Artifact) -> Path:
        """The tree of digest (downloaded once, however many ask at the same time), marked in use."""
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            tree = self._trees.get(digest)
            if tree is None:
                # A fresh name: an evicted tree of the same digest may still be being removed.
                tree = Path(tempfile.mkdtemp(prefix="tree-", dir=self.root))
                try:
                    await download(artifact, tree, self.max_entries, self.retries)
                except BaseException:
                    await remove_tree(tree)
                    raise
                self._trees[digest] = tree
            self._trees.move_to_end(digest)
            self._users[digest] = self._users.get(digest, 0) + 1
            return tree

    async def _evict(self) -> None:
        # One at a time, choosing again after each removal: while a tree is being removed another
        # checkout may take up a tree that was idle a moment ago.
        while len(self._trees) > self.keep:
            digest = next((d for d in self._trees if not self._users.get(d)), None)
            if digest is None:
                return
            tree = self._trees.pop(digest)
            self._users.pop(digest, None)
            lock = self._locks.get(digest)
            if lock is not None and not lock.locked():
                del self._locks[digest]
            # Copies already checked out are links, so they outlive the evicted tree.
            await remove_tree(tree)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        root, self._root = self._root, None
        self._trees.clear()
        self._users.clear()
        if root is not None:
            await remove_tree(root)
