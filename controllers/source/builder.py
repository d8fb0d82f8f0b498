"""The CPU-heavy half of a reconcile in worker processes: fetch + checkout, then include
copies + ignore rules + deterministic tar.gz + sha256.

Dulwich's pack inflation, tree writing and the tarball are Python code that holds the GIL
even in threads, so under load they starved the controller's event loop (artifact
downloads, watches, status patches). In a worker process they only cost the loop a pickle
of paths and a few hundred bytes of result. Arguments and results are plain data; Git
objects travel as their raw bytes.

Where the spec allows (no includes, sparse checkout or submodules, no symlinks in the tree)
the artifact is written straight from the fetched objects: no checkout on disk, about 4x
less work for a small repo, and byte-identical to the artifact of a checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import BaseRepo

from tide.controllers.source import git
from tide.controllers.source.conditions import GIT_OPERATION_FAILED
from tide.controllers.source.fork_server import ForkServer, Worker, WorkerDied
from tide.controllers.source.refs import Target
from tide.controllers.source.sourceignore import (
    IGNORE_FILE,
    Pattern,
    build_matcher,
    matcher_for_tree,
    read_patterns,
)
from tide.controllers.source.tarball import (
    Archive,
    ArtifactTooLarge,
    DeterministicTar,
    build_tarball,
    check_size,
)
from tide.shared.artifact import ArtifactError, extract_tarball
from tide.shared.artifact.extract import check_entries

T = TypeVar("T")


class IncludeCopyError(Exception):
    """An include could not be copied into the tree (message for the IncludeUnavailable condition)."""


class WorkerLost(git.GitError):
    reason = GIT_OPERATION_FAILED


@dataclass(frozen=True)
class CheckedOut:
    commit: str
    message: str
    commit_raw: bytes
    tag_raw: bytes | None
    round_trips: int

    def to_checkout(self) -> git.Checkout:
        commit = Commit.from_string(self.commit_raw)
        tag = Tag.from_string(self.tag_raw) if self.tag_raw is not None else None
        return git.Checkout(self.commit, self.message, tag, commit, self.round_trips)


@dataclass(frozen=True)
class IncludeCopy:
    name: str
    artifact_file: Path
    from_path: PurePosixPath
    to_path: PurePosixPath


@dataclass(frozen=True)
class DirectArchive:
    """Archive straight from the fetched objects, no checkout on disk (when the tree has no
    symlinks and the spec no includes, sparse checkout or submodules)."""

    ignore: str | None
    out_file: Path
    max_size: int
    max_entries: int = 0


@dataclass(frozen=True)
class DirectArchived:
    archive: Archive | None = None
    too_large: str | None = None  # raised by the reconciler after verification, as before
    # Writing the archive into storage failed (ENOSPC on a full --storage-path): a storage error
    # for the reconciler to report, not a crash of the checkout.
    store_failed: str | None = None


def checkout(
    url: str,
    auth: git.GitAuth,
    timeout: float,
    target: Target,
    dest: Path,
    options: git.CheckoutOptions,
    direct: DirectArchive | None = None,
) -> tuple[CheckedOut, DirectArchived | None]:
    """Fetch target (shallow where possible) and write its tree into dest; or, with direct,
    write the artifact from the fetched objects and nothing into dest (None when the tree
    needs a checkout on disk after all: then it is in dest)."""
    with git.Remote(url, auth, timeout) as remote:
        if direct is None:
            result = git.clone(remote, target, dest, options)
            return _checked_out(result.commit_object, result.tag_object, result.round_trips), None
        repo, commit, tag = git.fetch_commit(remote, target)
        try:
            done = _direct_archive(repo, commit, direct)
            if done is None:
                dest.mkdir(parents=True, exist_ok=True)
                git.write_tree(repo, commit.tree, dest)
        finally:
            repo.close()
        return _checked_out(commit, tag, remote.round_trips), done


def _checked_out(commit: Commit, tag: Tag | None, round_trips: int) -> CheckedOut:
    return CheckedOut(
        commit.id.decode(),
        commit.message.decode(errors="replace"),
        commit.as_raw_string(),
        tag.as_raw_string() if tag is not None else None,
        round_trips,
    )


class _NeedsCheckout(Exception):
    pass


def _entries(store: Any, tree_id: bytes, rel: str) -> list[tuple[str, int, bytes]]:
    tree = store[tree_id]
    assert isinstance(tree, Tree)
    out: list[tuple[str, int, bytes]] = []
    for entry in sorted(tree.iteritems(), key=lambda e: e.path):
        name = entry.path.decode("utf-8", "surrogateescape")
        git.check_entry_name(name, rel)
        if stat.S_ISLNK(entry.mode):
            raise _NeedsCheckout()  # whether it stays inside the tree is decided on disk
        out.append((name, entry.mode, entry.sha))
    return out


def _ignore_patterns(store: Any, tree_id: bytes, max_entries: int = 0) -> list[Pattern]:
    """sourceignore.load_ignore_patterns on the tree objects (same order). The first walk of
    the tree, so it counts the entries: more than max_entries (0: no limit) raise TooManyEntries."""
    patterns: list[Pattern] = []
    count = 0

    def visit(tid: bytes, domain: tuple[str, ...]) -> None:
        nonlocal count
        entries = _entries(store, tid, "/".join(domain) + "/" if domain else "")
        count += len(entries)
        check_entries(count, max_entries, "Git tree")
        for name, mode, sha in entries:
            if name == IGNORE_FILE and stat.S_ISREG(mode):
                blob = store[sha]
                assert isinstance(blob, Blob)
                patterns.extend(read_patterns(blob.data.decode("utf-8", errors="replace"), domain))
        subdirs = sorted((name, sha) for name, mode, sha in entries if stat.S_ISDIR(mode))
        for name, sha in subdirs:
            visit(sha, (*domain, name))

    visit(tree_id, ())
    return patterns


def _direct_archive(repo: BaseRepo, commit: Commit, direct: DirectArchive) -> DirectArchived | None:
    """build_tarball's walk over the commit's tree: same entries, order, modes and bytes."""
    store: Any = repo.object_store
    try:
        patterns = _ignore_patterns(store, commit.tree, direct.max_entries)
    except _NeedsCheckout:
        return None
    if direct.ignore is not None:
        patterns += read_patterns(direct.ignore)
    exclude = build_matcher(patterns).ignored
    content_size = 0
    files = 0
    try:
        with DeterministicTar(direct.out_file) as tar:

            def walk(tid: bytes, rel: tuple[str, ...]) -> None:
                nonlocal content_size, files
                for name, mode, sha in _entries(store, tid, "/".join(rel) + "/" if rel else ""):
                    parts = (*rel, name)
                    path = "/".join(parts)
                    if stat.S_ISDIR(mode) or mode == 0o160000:  # a submodule is an empty directory
                        if not exclude(parts, True):
                            tar.add_dir(path)
                        if stat.S_ISDIR(mode):
                            walk(sha, parts)
                        continue
                    if exclude(parts, False):
                        continue
                    blob = store[sha]
                    assert isinstance(blob, Blob)
                    data = blob.as_raw_string()
                    content_size += len(data)
                    check_size(content_size, direct.max_size)
                    tar.add_file(path, bool(mode & 0o100), len(data), io.BytesIO(data))
                    files += 1

            walk(commit.tree, ())
    except ArtifactTooLarge as exc:
        return DirectArchived(too_large=str(exc))
    except OSError as exc:  # only the archive is written here: the objects are read from the fetch
        return DirectArchived(store_failed=str(OSError(exc.errno, exc.strerror)) if exc.errno else str(exc))
    h = tar.hashing
    return DirectArchived(Archive(f"sha256:{h.hash.hexdigest()}", h.size, files, content_size))


def copy_includes(tree: Path, includes: list[IncludeCopy], max_size: int) -> None:
    for inc in includes:
        scratch = Path(tempfile.mkdtemp(prefix="tide-include-"))
        try:
            extract_tarball(inc.artifact_file, scratch / "x", max_size or 1 << 62)
            source = scratch / "x" / inc.from_path
            if not source.exists():
                raise IncludeCopyError(f"fromPath '{inc.from_path}' not found in include '{inc.name}'")
            dest = _include_destination(tree, inc)
            if source.is_dir():
                _copy_include_tree(tree, source, dest, inc)
            else:
                _copy_include_entry(tree, source, dest, inc)
        except ArtifactError as exc:
            raise IncludeCopyError(f"failed to copy include '{inc.name}': {exc}") from exc
        except OSError as exc:
            raise IncludeCopyError(f"failed to copy include '{inc.name}': {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _include_destination(tree: Path, inc: IncludeCopy) -> Path:
    """tree/toPath, refused when a symlink on the way would carry the copy elsewhere (a symlink at
    toPath itself is replaced by the include, as before)."""
    dest = tree
    for i, part in enumerate(inc.to_path.parts):
        dest = dest / part
        if dest.is_symlink():
            if i == len(inc.to_path.parts) - 1:
                dest.unlink()
            else:
                raise IncludeCopyError(
                    f"toPath '{inc.to_path}' of include '{inc.name}' goes through the symlink "
                    f"'{dest.relative_to(tree)}'"
                )
    return dest


def _copy_include_tree(tree: Path, source: Path, dest: Path, inc: IncludeCopy) -> None:
    """Copy source into dest without following a symlink on either side: a symlinked directory in
    dest (the repository's own, or one an earlier include placed) is never written through."""
    dest.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(source):
        here = Path(dirpath)
        target_dir = dest / here.relative_to(source)
        for name in dirnames:
            if (here / name).is_symlink():
                _copy_include_entry(tree, here / name, target_dir / name, inc)
                continue
            sub = target_dir / name
            if sub.is_symlink():
                raise IncludeCopyError(
                    f"include '{inc.name}' would write through the symlink '{sub.relative_to(tree)}'"
                )
            sub.mkdir(exist_ok=True)
        dirnames[:] = [n for n in dirnames if not (here / n).is_symlink()]
        for name in filenames:
            _copy_include_entry(tree, here / name, target_dir / name, inc)


def _copy_include_entry(tree: Path, source: Path, dest: Path, inc: IncludeCopy) -> None:
    """One file or symlink; whatever was at dest is replaced, never written into."""
    if dest.is_dir() and not dest.is_symlink():
        raise IncludeCopyError(f"include '{inc.name}' would replace the directory '{dest.relative_to(tree)}'")
    if source.is_symlink():
        link = os.readlink(source)
        real = os.path.realpath(dest.parent / link)
        if os.path.isabs(link) or not (real == str(tree.resolve()) or real.startswith(f"{tree.resolve()}/")):
            raise IncludeCopyError(
                f"include '{inc.name}' has a symlink '{source.name}' -> '{link}' that would point outside "
                "the artifact at its toPath"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copy2(source, dest, follow_symlinks=False)


def archive(
    tree: Path, includes: list[IncludeCopy], ignore: str | None, out_file: Path, max_size: int
) -> Archive:
    """Copy the includes into tree, apply the ignore rules and write the tar.gz."""
    copy_includes(tree, includes, max_size)
    matcher = matcher_for_tree(tree, ignore)
    return build_tarball(tree, out_file, matcher.ignored, max_size)


def default_build_workers(concurrent: int) -> int:
    """Worker processes: one per reconcile worker, but no more than the CPUs this process may use,
    less the one its own event loop needs (at least one). A build's CPU work is Python holding the
    GIL, so more processes than CPUs only add memory; its waits on the network are overlapped by
    the threads of each worker (calls_per_worker)."""
    return max(1, min(concurrent, len(os.sched_getaffinity(0)) - 1))


def calls_per_worker(concurrent: int, workers: int) -> int:
    """Enough calls per worker for every reconcile worker to build at once."""
    return max(1, -(-concurrent // max(1, workers)))


class BuildPool:
    """Worker processes for builds, at most `workers`, each running up to `calls_per_worker` builds
    at once in threads; forked when a build needs one and stopped after `idle_timeout` seconds
    unused; stopped with the controller (a server in run_controller's sense). `workers=0` runs
    builds in threads of this process.

    Workers come from a fork server forked when the pool is made: make it in the controller's
    main() after the imports and before the event loop (see fork_server). A build that is cancelled
    (its reconcile timed out) gets its worker killed and replaced, so a hostile input cannot keep it
    busy; the other builds that worker was running start again on a new one (once each). A build
    whose worker died by itself (the OOM killer) fails with WorkerLost, as do the others it ran."""

    leader_only = False

    def __init__(self, workers: int, calls_per_worker: int = 1, idle_timeout: float = 60.0) -> None:
        self.workers = max(0, workers)
        self.calls_per_worker = max(1, calls_per_worker)
        self.idle_timeout = idle_timeout
        self._server = ForkServer() if self.workers else None
        self._live: list[Worker] = []
        self._idle_since: dict[Worker, float] = {}
        self._slots = asyncio.Semaphore(self.workers * self.calls_per_worker or 1)
        self._reaper: asyncio.Task[None] | None = None
        self._stopped = False

    def _new_worker(self) -> Worker:
        assert self._server is not None
        if not self._server.alive():
            # Killed from outside: a new server is forked from this process, threads and all,
            # which is safe enough for a server that only forks (and rarer than a worker's death).
            self._server = ForkServer()
        worker = self._server.spawn(self.calls_per_worker)
        self._live.append(worker)
        return worker

    def _take(self) -> Worker:
        """An idle worker (the most recently used, so the others age out when load drops), else a
        new one while there are fewer than `workers` (builds spread over the CPUs), else the least
        busy. A slot was taken, so one of them has room."""
        for gone in [w for w in self._live if w.gone()]:
            self._drop(gone)
            gone.kill()
        idle = [w for w in self._live if w.busy == 0]
        if idle:
            return max(idle, key=lambda w: self._idle_since.get(w, 0.0))
        if len(self._live) < self.workers:
            return self._new_worker()
        return min(self._live, key=lambda w: w.busy)

    def _drop(self, worker: Worker) -> None:
        if worker in self._live:
            self._live.remove(worker)
        self._idle_since.pop(worker, None)

    async def start(self) -> None:
        if self.workers and self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        """Stop workers unused for idle_timeout: an idle controller keeps only its fork server."""
        while True:
            await asyncio.sleep(max(self.idle_timeout / 2, 0.05))
            now = time.monotonic()
            for worker in [w for w in self._live if w.busy == 0]:
                if now - self._idle_since.get(worker, now) >= self.idle_timeout:
                    self._drop(worker)
                    worker.close()

    async def stop(self) -> None:
        self._stopped = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        # Busy workers are killed by the cancellation of their reconciles.
        for worker in [w for w in self._live if w.busy == 0]:
            self._drop(worker)
            worker.close()
        if self._server is not None:
            await asyncio.to_thread(self._server.close)
            self._server = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.workers:
            return await asyncio.to_thread(fn, *args)
        async with self._slots:
            for attempt in range(2):
                if self._stopped:
                    raise WorkerLost("the build workers are stopped")
                worker = self._take()
                try:
                    result: T = await worker.call(fn, *args)
                except asyncio.CancelledError:
                    # Timed out (asyncio.wait_for) or shut down: the build may run on for as long
                    # as a hostile repository makes it; its process goes, a new one comes when
                    # needed.
                    self._drop(worker)
                    worker.kill()
                    raise
                except WorkerDied as exc:
                    self._drop(worker)
                    if (worker.killed or not exc.delivered) and attempt == 0:
                        # Stopped for another build's cancellation, or gone before this build
                        # reached it: this one runs again on a new worker.
                        continue
                    worker.kill()
                    raise WorkerLost(str(exc)) from exc
                finally:
                    if worker in self._live and worker.busy == 0:
                        self._idle_since[worker] = time.monotonic()
                return result
            raise WorkerLost("the build worker was stopped twice while this build ran")
