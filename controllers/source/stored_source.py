"""What every source reconciler shares: the storage its artifacts live in, their lifecycle (checked
on start, garbage-collected, removed with the object) and Flux's Ready story once one is stored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

from tide.controllers.source.builder import BuildPool
from tide.controllers.source.conditions import (
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    FETCH_FAILED,
    READY,
    STORAGE_FAILED,
)
from tide.controllers.source.storage import Storage
from tide.shared.api.meta import Artifact, KubeObject
from tide.shared.artifact import DEFAULT_MAX_ENTRIES
from tide.shared.runtime import ReconcileContext, ReconcileError
from tide.shared.runtime.conditions import SUCCEEDED_REASON, now_rfc3339
from tide.shared.runtime.reconciler import FLUX_FINALIZER, Reconciler

Source = TypeVar("Source", bound=KubeObject)


class StoredSourceReconciler(Reconciler[Source]):
    kind: ClassVar[str]
    ready_message: ClassVar[str]  # format with {revision}
    finalizer = FLUX_FINALIZER

    def __init__(
        self,
        storage: Storage,
        max_artifact_size: int = 100 * 1024 * 1024,
        builds: BuildPool | None = None,
        max_artifact_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.storage = storage
        self.max_artifact_size = max_artifact_size
        self.max_artifact_entries = max_artifact_entries
        # Fetch, extract and archive hold the GIL: in worker processes when given a pool.
        self.builds = builds or BuildPool(0)

    async def finalize(self, obj: Source, ctx: ReconcileContext) -> None:
        await asyncio.to_thread(
            self.storage.remove_all, self.kind, obj.metadata.namespace or "", obj.metadata.name or ""
        )

    def _fetch_failed(self, ctx: ReconcileContext, reason: str, message: str) -> NoReturn:
        ctx.set_condition(FETCH_FAILED, "True", reason, message)
        raise ReconcileError(reason, message)

    async def _check_storage(self, obj: Any, ctx: ReconcileContext) -> bool:
        """The advertised artifact must exist with its digest; otherwise forget it (False) and rebuild."""
        artifact = ctx.status.artifact
        if artifact is None:
            return True
        ok = await asyncio.to_thread(self.storage.verify, artifact.path, artifact.digest)
        if not ok:
            ctx.log.info("artifact %s missing or changed in storage: rebuilding", artifact.path)
            ctx.status.artifact = None
            ctx.remove_condition(ARTIFACT_IN_STORAGE)
        return bool(ok)

    async def _commit(self, ctx: ReconcileContext, temp: Path, rel: str, digest: str) -> None:
        """Move a finished artifact into place; a storage error is StorageOperationFailed."""
        try:
            await asyncio.to_thread(self.storage.commit, temp, rel, digest)
        except OSError as exc:
            message = f"unable to save artifact to storage: {exc}"
            ctx.set_condition(STORAGE_FAILED, "True", "ArchiveOperationFailed", message)
            raise ReconcileError("ArchiveOperationFailed", message) from exc
        ctx.remove_condition(STORAGE_FAILED)

    def _stored_artifact(
        self, rel: str, revision: str, digest: str, size: int, metadata: dict[str, str] | None = None
    ) -> Artifact:
        """The status.artifact of a file just stored at rel (a path in the storage)."""
        return Artifact(
            path=rel,
            url=self.storage.url(rel),
            revision=revision,
            digest=digest,
            last_update_time=now_rfc3339(),
            size=size,
            metadata=metadata,
        )

    def _ready(self, ctx: ReconcileContext, revision: str) -> None:
        message = self.ready_message.format(revision=revision)
        ctx.remove_condition(ARTIFACT_OUTDATED)
        ctx.remove_condition(FETCH_FAILED)
        ctx.remove_condition(STORAGE_FAILED)
        ctx.set_condition(ARTIFACT_IN_STORAGE, "True", SUCCEEDED_REASON, message)
        ctx.set_condition(READY, "True", SUCCEEDED_REASON, message)

    async def _collect_garbage(self, obj: Any, ctx: ReconcileContext) -> None:
        current = ctx.status.artifact.path if ctx.status.artifact else None
        await asyncio.to_thread(
            self.storage.garbage_collect,
            self.kind,
            obj.metadata.namespace or "",
            obj.metadata.name or "",
            current,
        )
