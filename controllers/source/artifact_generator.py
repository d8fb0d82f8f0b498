"""ArtifactGenerator: observe the sources' artifacts, compose each output, store it, publish it as an
ExternalArtifact, forget the outputs that left the spec (Flux's source-watcher).

A reconcile whose sources did not move (same digest, revision and URL for every alias) and whose
ExternalArtifacts and stored files are intact does nothing else. Each output's revision is
`latest@<digest>` of its deterministic tarball (or a source's revision, with `revision: @alias`),
so an output whose content did not change keeps its revision and its consumers stay quiet.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tide.controllers.source import artifact_composer
from tide.controllers.source.artifact_composer import Copy, CopyError, Output
from tide.controllers.source.stored_source import StoredSourceReconciler
from tide.controllers.source.tarball import Archive, ArtifactTooLarge
from tide.shared.api.artifact_generator import (
    FINALIZER,
    GENERATOR_LABEL,
    ORIGIN_REVISION_KEY,
    ArtifactGenerator,
    ExternalArtifactReference,
    OutputArtifact,
)
from tide.shared.api.meta import Artifact
from tide.shared.runtime import ReconcileContext, ReconcileError, Result, StalledError
from tide.shared.runtime.conditions import (
    ACCESS_DENIED_REASON,
    BUILD_FAILED_REASON,
    READY,
    RECONCILIATION_FAILED_REASON,
    SUCCEEDED_REASON,
    VALIDATION_FAILED_REASON,
    now_rfc3339,
)
from tide.shared.runtime.events import NORMAL
from tide.shared.runtime.kind_controller import KindController

SOURCE_API = "source.toolkit.fluxcd.io/v1"
EXTERNAL_ARTIFACT = "ExternalArtifact"
WATCHED_SOURCE_KINDS = ("GitRepository", "OCIRepository", "Bucket", "HelmChart", EXTERNAL_ARTIFACT)
REQUEUE_AFTER = 3600.0  # Flux's source-watcher: sources are watched, this is a safety net
BUILD_TIMEOUT = 300.0  # extraction, copies and tarballs of all outputs, bounded in size already
SOURCE_FETCH_FAILED = "SourceFetchFailed"


@dataclass(frozen=True)
class ObservedSource:
    """A source's artifact as seen in its status."""

    kind: str
    namespace: str
    name: str
    artifact: Artifact

    def origin_revision(self) -> str:
        return (self.artifact.metadata or {}).get(ORIGIN_REVISION_KEY) or self.artifact.revision


def sources_digest(observed: dict[str, ObservedSource]) -> str:
    """Flux's observedSourcesDigest: sha256 over the sorted `alias=[digest,revision,url]` entries."""
    parts = sorted(
        f"{alias}=[digest={s.artifact.digest or ''},revision={s.artifact.revision},url={s.artifact.url}]"
        for alias, s in observed.items()
    )
    return "sha256:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def validate(obj: ArtifactGenerator, no_cross_namespace_refs: bool) -> None:
    """What the CRD cannot check: aliases unique and known, names unique, namespaces allowed."""
    spec = obj.spec
    if spec.path_pattern:
        raise StalledError(
            VALIDATION_FAILED_REASON,
            "spec.pathPattern is not supported by Tide yet: no artifact was generated; "
            "list the artifacts in spec.artifacts instead",
        )
    aliases = [s.alias for s in spec.sources]
    duplicates = sorted({a for a in aliases if aliases.count(a) > 1})
    if duplicates:
        raise StalledError(VALIDATION_FAILED_REASON, f"duplicate source alias(es): {', '.join(duplicates)}")
    names = [a.name for a in spec.artifacts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StalledError(VALIDATION_FAILED_REASON, f"duplicate artifact name(s): {', '.join(duplicates)}")
    for artifact in spec.artifacts:
        for ref in (artifact.revision, artifact.origin_revision):
            if ref and ref[1:] not in aliases:
                raise StalledError(
                    VALIDATION_FAILED_REASON, f"artifact '{artifact.name}': unknown source alias '{ref}'"
                )
        for op in artifact.copy_:
            alias = op.from_[1:].split("/", 1)[0]
            if alias not in aliases:
                raise StalledError(
                    VALIDATION_FAILED_REASON,
                    f"artifact '{artifact.name}': copy from unknown source alias '@{alias}'",
                )
    if no_cross_namespace_refs:
        for source in spec.sources:
            if source.namespace and source.namespace != obj.namespace:
                raise StalledError(
                    ACCESS_DENIED_REASON,
                    f"cross-namespace references are not allowed: {source.kind} "
                    f"'{source.namespace}/{source.name}'",
                )


def copies_of(artifact: OutputArtifact) -> tuple[Copy, ...]:
    return tuple(
        Copy(op.from_, op.to, tuple(op.exclude or ()), op.strategy or "Overwrite") for op in artifact.copy_
    )


def generators_using(
    generators: Iterable[dict[str, Any]], kind: str, namespace: str, name: str
) -> list[tuple[str, str]]:
    """The ArtifactGenerators with this object as a source, or (an ExternalArtifact) in their inventory."""
    keys = []
    for gen in generators:
        meta = gen.get("metadata") or {}
        gen_ns = meta.get("namespace") or ""
        sources = (gen.get("spec") or {}).get("sources") or []
        uses = any(
            s.get("kind") == kind and s.get("name") == name and (s.get("namespace") or gen_ns) == namespace
            for s in sources
        )
        owns = kind == EXTERNAL_ARTIFACT and any(
            i.get("name") == name and i.get("namespace") == namespace
            for i in (gen.get("status") or {}).get("inventory") or []
        )
        if uses or owns:
            keys.append((gen_ns, meta.get("name") or ""))
    return keys


def _artifact_moved(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    def key(obj: dict[str, Any] | None) -> tuple[Any, ...]:
        artifact = ((obj or {}).get("status") or {}).get("artifact") or {}
        return (artifact.get("revision"), artifact.get("digest"), artifact.get("url"))

    return key(old) != key(new)


def _uid(ctx: ReconcileContext) -> str:
    return str((ctx.raw.get("metadata") or {}).get("uid") or "")


class ArtifactGeneratorReconciler(StoredSourceReconciler[ArtifactGenerator]):
    """Stores its outputs under ExternalArtifact's storage directory (`externalartifact/<ns>/<name>`)."""

    model = ArtifactGenerator
    kind = EXTERNAL_ARTIFACT
    ready_message = "reconciliation succeeded, generated {revision} artifact(s)"
    finalizer = FINALIZER

    def setup(self, controller: KindController) -> None:
        """A source with a new artifact (or a generated ExternalArtifact changed or deleted behind
        our back) reconciles the ArtifactGenerators that use it."""

        def watch(kind: str) -> None:
            def keys(obj: dict[str, Any]) -> list[tuple[str, str]]:
                meta = obj.get("metadata") or {}
                informer = controller.informer
                items = informer.items() if informer is not None else []
                return generators_using(items, kind, meta.get("namespace") or "", meta.get("name") or "")

            controller.watch(
                SOURCE_API, kind, keys, namespace=controller.namespace, predicate=_artifact_moved
            )

        for kind in WATCHED_SOURCE_KINDS:
            watch(kind)

    # -- the story --------------------------------------------------------------------------------

    async def reconcile(self, obj: ArtifactGenerator, ctx: ReconcileContext) -> Result:
        validate(obj, bool(getattr(ctx.options, "no_cross_namespace_refs", False)))
        observed = await self._observe_sources(obj, ctx)
        digest = sources_digest(observed)
        if await self._up_to_date(obj, ctx, digest):
            self._generated(ctx, len(obj.spec.artifacts))
            return Result(requeue_after=REQUEUE_AFTER)

        await ctx.progress(f"building {len(obj.spec.artifacts)} artifact(s)")
        stored = await self._build(obj, ctx, observed)
        previous = {(i.name, i.digest) for i in ctx.status.inventory or []}
        inventory = []
        changed = []
        for output, artifact in zip(obj.spec.artifacts, stored, strict=True):
            await self._publish(obj, ctx, output, artifact)
            inventory.append(
                ExternalArtifactReference(
                    name=output.name,
                    namespace=obj.namespace,
                    digest=artifact.digest or "",
                    filename=artifact.path.rsplit("/", 1)[-1],
                )
            )
            if (output.name, artifact.digest) not in previous:
                changed.append(f"{obj.namespace}/{output.name} ({artifact.revision})")
        wanted = {output.name for output in obj.spec.artifacts}
        for orphan in [i for i in ctx.status.inventory or [] if i.name not in wanted]:
            await self._remove(ctx, orphan.namespace, orphan.name)
            ctx.event(NORMAL, READY, f"ExternalArtifact/{orphan.namespace}/{orphan.name} deleted")
        for output in obj.spec.artifacts:
            current = next(i for i in inventory if i.name == output.name)
            await asyncio.to_thread(
                self.storage.garbage_collect,
                EXTERNAL_ARTIFACT,
                obj.namespace,
                output.name,
                self._path(obj.namespace, output.name, current.filename),
            )
        ctx.status.inventory = inventory
        ctx.status.observed_sources_digest = digest
        self._generated(ctx, len(inventory))
        if changed:
            ctx.event(NORMAL, READY, "external artifacts reconciled: " + "\n".join(changed))
        return Result(requeue_after=REQUEUE_AFTER)

    async def finalize(self, obj: ArtifactGenerator, ctx: ReconcileContext) -> None:
        for ref in ctx.status.inventory or []:
            await self._remove(ctx, ref.namespace, ref.name)

    # -- steps ------------------------------------------------------------------------------------

    def _path(self, namespace: str, name: str, filename: str) -> str:
        return f"{self.storage.object_dir(EXTERNAL_ARTIFACT, namespace, name)}/{filename}"

    def _generated(self, ctx: ReconcileContext, count: int) -> None:
        ctx.set_condition(READY, "True", SUCCEEDED_REASON, self.ready_message.format(revision=count))

    async def _observe_sources(
        self, obj: ArtifactGenerator, ctx: ReconcileContext
    ) -> dict[str, ObservedSource]:
        requeue = float(getattr(ctx.options, "requeue_dependency", 30.0) or 30.0)
        observed = {}
        for source in obj.spec.sources:
            namespace = source.namespace or obj.namespace
            found = await ctx.kube.get(SOURCE_API, source.kind, source.name, namespace)
            if found is None:
                raise ReconcileError(
                    SOURCE_FETCH_FAILED,
                    f"get sources failed: {source.kind} '{namespace}/{source.name}' not found",
                    requeue_after=requeue,
                )
            artifact = ((found.get("status") or {}).get("artifact")) or None
            if not artifact:
                raise ReconcileError(
                    SOURCE_FETCH_FAILED,
                    f"get sources failed: source '{source.kind}/{namespace}/{source.name}' is not ready",
                    requeue_after=requeue,
                )
            observed[source.alias] = ObservedSource(
                source.kind, namespace, source.name, Artifact.model_validate(artifact)
            )
        return observed

    async def _up_to_date(self, obj: ArtifactGenerator, ctx: ReconcileContext, digest: str) -> bool:
        """No drift: same sources, same generation, every output published and intact."""
        status = ctx.status
        ready = ctx.get_condition(READY)
        if status.observed_sources_digest != digest or ctx.observed_generation != ctx.generation:
            return False
        if not ready or ready.get("status") != "True":
            return False
        inventory = {i.name: i for i in status.inventory or []}
        if set(inventory) != {a.name for a in obj.spec.artifacts}:
            return False
        for ref in inventory.values():
            rel = self._path(ref.namespace, ref.name, ref.filename)
            if not await asyncio.to_thread(self.storage.verify, rel, ref.digest):
                return False
            published = await ctx.kube.get(SOURCE_API, EXTERNAL_ARTIFACT, ref.name, ref.namespace)
            artifact = ((published or {}).get("status") or {}).get("artifact") or {}
            if artifact.get("digest") != ref.digest:
                return False
        return True

    async def _source_file(self, ctx: ReconcileContext, alias: str, source: ObservedSource) -> Path:
        """The source's tar.gz in this controller's storage, checked against its digest. The status
        is hostile: its path must be the source's own storage directory (no other object's files)."""
        artifact = source.artifact
        own_dir = self.storage.object_dir(source.kind, source.namespace, source.name)
        parts = PurePosixPath(artifact.path).parts
        if not artifact.path.startswith(own_dir + "/") or ".." in parts or not artifact.digest:
            raise ReconcileError(
                SOURCE_FETCH_FAILED,
                f"fetch sources failed: the artifact of '@{alias}' ({artifact.url}) is not one this source "
                "controller stored for it: only artifacts of its own storage are composed",
            )
        if not await asyncio.to_thread(self.storage.verify, artifact.path, artifact.digest):
            raise ReconcileError(
                SOURCE_FETCH_FAILED,
                f"fetch sources failed: the artifact of '@{alias}' is not in storage (yet)",
                requeue_after=float(getattr(ctx.options, "requeue_dependency", 30.0) or 30.0),
            )
        return self.storage.local_path(artifact.path)

    async def _build(
        self, obj: ArtifactGenerator, ctx: ReconcileContext, observed: dict[str, ObservedSource]
    ) -> list[Artifact]:
        """Compose every output in a build worker, then store the tarballs and describe them."""
        ns = obj.namespace
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="tide-ag-"))
        temps: list[Path] = []
        try:
            files = {alias: str(await self._source_file(ctx, alias, s)) for alias, s in observed.items()}
            for output in obj.spec.artifacts:
                temps.append(
                    await asyncio.to_thread(self.storage.new_temp_file, EXTERNAL_ARTIFACT, ns, output.name)
                )
            outputs = [
                Output(o.name, copies_of(o), str(temp))
                for o, temp in zip(obj.spec.artifacts, temps, strict=True)
            ]
            try:
                build = self.builds.run(
                    artifact_composer.generate, files, outputs, str(work / "build"),
                    self.max_artifact_size, self.max_artifact_entries,
                )  # fmt: skip
                archives: list[Archive] = await asyncio.wait_for(build, BUILD_TIMEOUT)
            except (CopyError, ArtifactTooLarge) as exc:
                raise ReconcileError(BUILD_FAILED_REASON, str(exc)) from exc
            except TimeoutError as exc:
                message = f"build timed out after {BUILD_TIMEOUT:g}s (the worker was stopped)"
                raise ReconcileError(BUILD_FAILED_REASON, message) from exc
            stored = []
            for output, temp, archive in zip(obj.spec.artifacts, temps, archives, strict=True):
                rel = self._path(ns, output.name, f"{archive.digest.removeprefix('sha256:')}.tar.gz")
                await self._commit(ctx, temp, rel, archive.digest)
                stored.append(self._describe(output, observed, rel, archive))
            return stored
        finally:
            for temp in temps:
                await asyncio.to_thread(temp.unlink, True)
            await asyncio.to_thread(shutil.rmtree, work, True)

    def _describe(
        self, output: OutputArtifact, observed: dict[str, ObservedSource], rel: str, archive: Archive
    ) -> Artifact:
        revision = f"latest@{archive.digest}"
        if output.revision:
            revision = observed[output.revision[1:]].artifact.revision
        metadata = None
        if output.origin_revision:
            metadata = {ORIGIN_REVISION_KEY: observed[output.origin_revision[1:]].origin_revision()}
        return self._stored_artifact(rel, revision, archive.digest, archive.size, metadata)

    async def _publish(
        self, obj: ArtifactGenerator, ctx: ReconcileContext, output: OutputArtifact, artifact: Artifact
    ) -> None:
        """Create or update the ExternalArtifact (server-side apply) and its status."""
        ns, uid = obj.namespace, _uid(ctx)
        existing = await ctx.kube.get(SOURCE_API, EXTERNAL_ARTIFACT, output.name, ns)
        owner = (((existing or {}).get("metadata") or {}).get("labels") or {}).get(GENERATOR_LABEL)
        if owner and uid and owner != uid:
            raise ReconcileError(
                RECONCILIATION_FAILED_REASON,
                f"{output.name} reconcile failed: ExternalArtifact '{ns}/{output.name}' belongs to another "
                "ArtifactGenerator",
            )
        common = obj.spec.common_metadata
        labels = dict((common.labels if common else None) or {})
        labels.update({"app.kubernetes.io/managed-by": ctx.controller_name, GENERATOR_LABEL: uid})
        metadata: dict[str, Any] = {"name": output.name, "namespace": ns, "labels": labels}
        if common and common.annotations:
            metadata["annotations"] = dict(common.annotations)
        body = {
            "apiVersion": SOURCE_API,
            "kind": EXTERNAL_ARTIFACT,
            "metadata": metadata,
            "spec": {
                "sourceRef": {
                    "apiVersion": obj.api_version,
                    "kind": obj.kind,
                    "name": obj.name,
                    "namespace": ns,
                }
            },
        }
        applied = await ctx.kube.apply(body, field_manager=ctx.controller_name)
        current = ((existing or {}).get("status") or {}).get("artifact") or {}
        ready = [
            c
            for c in ((existing or {}).get("status") or {}).get("conditions") or []
            if c.get("type") == READY
        ]
        if (
            current.get("digest") == artifact.digest
            and current.get("revision") == artifact.revision
            and ready
        ):
            return  # unchanged: keep its lastUpdateTime, so nothing downstream moves
        generation = (applied.get("metadata") or {}).get("generation")
        condition = {
            "type": READY,
            "status": "True",
            "reason": SUCCEEDED_REASON,
            "message": "Artifact is ready",
            "lastTransitionTime": now_rfc3339(),
            **({"observedGeneration": generation} if generation is not None else {}),
        }
        await ctx.kube.patch_status(
            SOURCE_API,
            EXTERNAL_ARTIFACT,
            output.name,
            ns,
            {"status": {"artifact": artifact.to_wire(), "conditions": [condition]}},
            ctx.field_manager,
        )
        ctx.log.info(
            "%s/%s/%s reconciled with revision %s", EXTERNAL_ARTIFACT, ns, output.name, artifact.revision
        )

    async def _remove(self, ctx: ReconcileContext, namespace: str, name: str) -> None:
        """Delete a generated ExternalArtifact and its stored files (only if it is still ours)."""
        existing = await ctx.kube.get(SOURCE_API, EXTERNAL_ARTIFACT, name, namespace)
        owner = (((existing or {}).get("metadata") or {}).get("labels") or {}).get(GENERATOR_LABEL)
        if owner and owner != _uid(ctx):
            return  # taken over by another ArtifactGenerator: its object and files now
        if existing is not None:
            await ctx.kube.delete(SOURCE_API, EXTERNAL_ARTIFACT, name, namespace)
        await asyncio.to_thread(self.storage.remove_all, EXTERNAL_ARTIFACT, namespace, name)
