"""The Kustomization reconcile, in Flux's order: source, dependencies, fetch, build (decrypt,
substitute), apply, prune, health, report."""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tide.controllers.kustomize import decrypt
from tide.controllers.kustomize.apply import Applier, ApplyError, ApplyOptions, ChangeSet
from tide.controllers.kustomize.depends_on import (
    dependency_keys,
    dependency_not_ready,
    depends_on_edges,
    find_cycle,
    format_cycle,
    source_keys,
)
from tide.controllers.kustomize.drift import (
    DELETION,
    DRIFT_BACKOFF_REASON,
    FightDetector,
    backoff_message,
    correction_disabled,
    is_drift,
    other_writer,
    owner_of,
)
from tide.controllers.kustomize.fields import digest
from tide.controllers.kustomize.history import upsert_history
from tide.controllers.kustomize.options import KustomizeOptions
from tide.controllers.kustomize.prune import delete_entries, should_delete_on_finalize, wait_terminated
from tide.shared.api.artifact_generator import EXTERNAL_ARTIFACT_GATE
from tide.shared.api.kustomize import Kustomization, Snapshot
from tide.shared.api.meta import Artifact, NamespacedObjectKindReference, ResourceInventory, format_duration
from tide.shared.artifact import ArtifactError
from tide.shared.artifact.fetch import (
    SERVED_SOURCE_KINDS,
    SOURCE_GROUP_VERSION,
    ArtifactCache,
    SourceNotReady,
    artifact_of,
    remove_tree,
)
from tide.shared.inventory import Entry, Inventory, ObjectRef, split_api_version
from tide.shared.kube import KubeClient
from tide.shared.kube.errors import KubeUnreachableError, ResourceNotFoundError
from tide.shared.kube.health import (
    HealthCheckCanceled,
    HealthTarget,
    InvalidCELExpression,
    compile_exprs,
    wait_for_health,
)
from tide.shared.kube.informer import object_key
from tide.shared.kube.kubeconfig_secret import KubeconfigSecretError
from tide.shared.kube.targets import Target, TargetClients
from tide.shared.kustomize.build import BuildError, BuildNotFinished, build_inputs
from tide.shared.kustomize.render import (
    VariablesSourceNotFound,
    add_flux_metadata,
    render,
    substitution_variables,
)
from tide.shared.kustomize.substitute import SubstitutionError
from tide.shared.runtime.conditions import (
    ACCESS_DENIED_REASON,
    ARTIFACT_FAILED_REASON,
    BUILD_FAILED_REASON,
    DEPENDENCY_NOT_READY_REASON,
    HEALTH_CHECK_CANCELED_REASON,
    HEALTH_CHECK_FAILED_REASON,
    HEALTHY,
    INVALID_CEL_EXPRESSION_REASON,
    PROGRESSING_REASON,
    PRUNE_FAILED_REASON,
    READY,
    RECONCILIATION_FAILED_REASON,
    RECONCILIATION_SUCCEEDED_REASON,
    SUCCEEDED_REASON,
    condition_of,
    is_true,
    now_rfc3339,
)
from tide.shared.runtime.context import ReconcileContext
from tide.shared.runtime.kind_controller import KindController
from tide.shared.runtime.reconciler import FLUX_FINALIZER, Reconciler
from tide.shared.runtime.result import ReconcileError, Result, StalledError

KUSTOMIZATION_API = Kustomization.storage_api_version()
# Indexes of the Kustomizations' cache: by the source each reads, by each dependency it names.
SOURCE_INDEX = "source"
DEPENDS_ON_INDEX = "dependsOn"
UNREACHABLE_RETRY = 5.0  # seconds before the first retry of a cluster that did not answer
CACHE_SYNC_TIMEOUT = 10.0
# Off by default, as in Flux: a health wait runs to its end before a new revision is applied.
CANCEL_HEALTH_CHECK_GATE = "CancelHealthCheckOnNewRevision"
STRICT_SUBSTITUTIONS_GATE = "StrictPostBuildSubstitutions"
"""On by default, as in Flux since kustomize-controller v1.9: an undefined variable without a
default fails the build; off, it becomes the empty string."""
Key = tuple[str, str]


@dataclass
class CachedBuild:
    """The last build output of one Kustomization, reused while its inputs are the same."""

    inputs: str
    objects: list[dict[str, Any]]
    digest: str = ""


def _ready_condition(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    ready = condition_of(obj, READY) or {}
    return ready.get("status"), ready.get("reason")


def _artifact_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    if old is None:
        return True
    a, b = artifact_of(old), artifact_of(new)
    return (a and (a.revision, a.digest)) != (b and (b.revision, b.digest))


def _readiness_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    if old is None:
        return True
    return _ready_condition(old) != _ready_condition(new) or (old.get("status") or {}).get(
        "lastAppliedRevision"
    ) != (new.get("status") or {}).get("lastAppliedRevision")


class KustomizationReconciler(Reconciler[Kustomization]):
    model = Kustomization
    finalizer = FLUX_FINALIZER
    reports_progress = True  # ctx.while_progressing around its slow steps

    def __init__(self, options: KustomizeOptions | None = None) -> None:
        self.options = options or KustomizeOptions()
        self.appliers: dict[str, Applier] = {}  # by Target.slot: one per identity and cluster
        self.targets: TargetClients | None = None
        self._unreachable: dict[Key, int] = {}  # consecutive reconciles that could not reach the cluster
        self.builds: dict[Key, CachedBuild] = {}
        self.controller: KindController | None = None
        self._built: dict[Key, tuple[str, str]] = {}  # this reconcile's build digest and revision
        self.fights = FightDetector()
        self.artifacts = ArtifactCache(
            keep=self.options.artifact_cache_revisions,
            max_entries=self.options.artifact_max_entries,
            retries=self.options.http_retry,
            storage=list(self.options.source_storage),
        )

    # --- watches -----------------------------------------------------------------------------------

    def setup(self, controller: KindController) -> None:
        """Reconcile a Kustomization when its source publishes a new artifact, and when a dependency
        becomes ready (sooner than --requeue-dependency)."""
        self.controller = controller
        if controller.informer is not None:
            controller.informer.add_index(SOURCE_INDEX, source_keys)
            controller.informer.add_index(DEPENDS_ON_INDEX, dependency_keys)
        for kind in self._source_kinds():
            controller.watch(
                SOURCE_GROUP_VERSION,
                kind,
                self._users_of_source(kind),
                namespace=controller.namespace,
                predicate=_artifact_changed,
            )
        controller.watch(
            KUSTOMIZATION_API,
            "Kustomization",
            self._dependents_of,
            namespace=controller.namespace,
            predicate=_readiness_changed,
        )

    def _indexed(self, index: str, value: Any) -> Iterable[Key]:
        informer = self.controller.informer if self.controller else None
        if informer is None:
            return []
        return [object_key(ks) for ks in informer.by_index(index, value)]

    def _users_of_source(self, kind: str) -> Any:
        def keys(source: dict[str, Any]) -> Iterable[Key]:
            namespace, name = object_key(source)
            return self._indexed(SOURCE_INDEX, (kind, namespace, name))

        return keys

    def _dependents_of(self, dep: dict[str, Any]) -> Iterable[Key]:
        return self._indexed(DEPENDS_ON_INDEX, object_key(dep))

    # --- helpers -----------------------------------------------------------------------------------

    @property
    def applier(self) -> Applier | None:
        """The applier acting with the controller's own identity on this cluster."""
        return self.appliers.get("")

    def _targets(self, ctx: ReconcileContext) -> TargetClients:
        if self.targets is None or self.targets.kube is not ctx.kube:
            self.targets = TargetClients(
                ctx.kube, self.options.kubeconfig_policy, self.options.default_service_account
            )
        return self.targets

    async def _target(self, ctx: ReconcileContext, obj: Kustomization) -> Target:
        """Who applies, prunes and health-checks for this Kustomization, and on which cluster:
        the ServiceAccount it names (else --default-service-account) through impersonation, on the
        cluster its kubeConfig Secret describes (else this one). The kubeconfig Secret is read
        with the controller's identity, from the watch cache."""
        spec = obj.spec
        kubeconfig = None
        if spec.kube_config is not None and spec.kube_config.secret_ref is not None:
            kubeconfig = (spec.kube_config.secret_ref.name, spec.kube_config.secret_ref.key)

        async def get_secret(namespace: str, name: str) -> dict[str, Any] | None:
            return await self._cached_get(ctx, "v1", "Secret", namespace, name, namespace)

        try:
            return await self._targets(ctx).target(
                ctx.namespace, spec.service_account_name, kubeconfig, get_secret
            )
        except KubeconfigSecretError as err:
            raise ReconcileError(RECONCILIATION_FAILED_REASON, f"invalid spec.kubeConfig: {err}") from err

    def _applier(self, ctx: ReconcileContext, target: Target | None = None) -> Applier:
        client = target.client if target is not None else ctx.kube
        slot = target.slot if target is not None else ""
        applier = self.appliers.get(slot)
        if applier is None or applier.kube is not client:
            handler = None
            if self.options.drift_correction:
                handler = functools.partial(self._on_applied_object_change, slot)
            # An impersonated identity may list only where its RBAC allows: caches per namespace.
            scoped = target is not None and target.service_account is not None
            applier = Applier(client, on_change=handler, namespaced_caches=scoped)
            self.appliers[slot] = applier
        return applier

    def _on_applied_object_change(
        self, slot: str, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        """Drift of an object a Kustomization applied: reconcile its owner now (backing off while
        another writer fights over a field we own), unless the owner opted out."""
        applier, controller = self.appliers.get(slot), self.controller
        if applier is None or controller is None or controller.informer is None:
            return
        if not is_drift(event_type, obj, old, applier.fingerprint_of(obj), applier.manager):
            return
        owner = owner_of(obj)
        kustomization = controller.informer.get(*owner) if owner is not None else None
        if owner is None or kustomization is None or correction_disabled(kustomization):
            return
        ref = ObjectRef.of(obj)
        writer = DELETION if event_type == "DELETED" else other_writer(obj, old, applier.manager)
        verdict = self.fights.observe(f"{obj.get('apiVersion')}/{ref.id}", time.monotonic())
        if verdict.warn:
            controller.recorder.record(
                kustomization,
                "Warning",
                DRIFT_BACKOFF_REASON,
                backoff_message(ref.display(), writer, verdict.delay),
            )
        controller.enqueue(*owner, after=verdict.delay)

    async def _cached_get(
        self,
        ctx: ReconcileContext,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        scope: str | None = None,
    ) -> dict[str, Any] | None:
        """An object from a watch cache (scope: None = all namespaces, else that namespace); a
        direct GET when the cache cannot sync (e.g. no permission to watch)."""
        informer = ctx.kube.informer(api_version, kind, namespace=scope)
        try:
            if not informer.synced:
                await informer.wait_synced(CACHE_SYNC_TIMEOUT)
            found = informer.get(namespace, name)
            return copy.deepcopy(found) if found is not None else None
        except TimeoutError:
            result = await ctx.kube.get(api_version, kind, name, namespace)
            return result if isinstance(result, dict) else None

    def _source_kinds(self) -> tuple[str, ...]:
        """The source kinds served: ExternalArtifact only with its feature gate on (Flux)."""
        allowed = self.options.feature_gates.get(EXTERNAL_ARTIFACT_GATE, True)
        return tuple(k for k in SERVED_SOURCE_KINDS if allowed or k != "ExternalArtifact")

    def _refuse_cross_namespace(self, ctx: ReconcileContext, what: str, namespace: str | None) -> None:
        if namespace and namespace != ctx.namespace and self.options.no_cross_namespace_refs:
            raise StalledError(
                ACCESS_DENIED_REASON,
                f"cannot access {what} in namespace '{namespace}': cross-namespace references are "
                "disabled (--no-cross-namespace-refs)",
            )

    # --- the reconcile ------------------------------------------------------------------------------

    async def reconcile(self, obj: Kustomization, ctx: ReconcileContext) -> Result:
        key = (ctx.namespace, ctx.name)
        started = time.monotonic()
        self._built.pop(key, None)
        try:
            result = await self._reconcile(obj, ctx)
        except (ReconcileError, StalledError) as err:
            self._record_history(ctx, key, started, err.reason)
            raise
        self._record_history(ctx, key, started, RECONCILIATION_SUCCEEDED_REASON)
        return result

    def _record_history(self, ctx: ReconcileContext, key: Key, started: float, reason: str) -> None:
        """Flux's status.history entry for a reconcile that got as far as a build."""
        built = self._built.pop(key, None)
        if built is None:
            return
        digest_, revision = built
        metadata = {"revision": revision}
        if ctx.status.last_applied_origin_revision and reason == RECONCILIATION_SUCCEEDED_REASON:
            metadata["originRevision"] = ctx.status.last_applied_origin_revision
        history = upsert_history(
            [s.model_dump(by_alias=True, exclude_none=True) for s in ctx.status.history or []],
            digest_,
            now_rfc3339(),
            format_duration(time.monotonic() - started),
            reason,
            metadata,
        )
        ctx.status.history = [Snapshot.model_validate(e) for e in history]

    async def _reconcile(self, obj: Kustomization, ctx: ReconcileContext) -> Result:
        spec = obj.spec
        key = (ctx.namespace, ctx.name)
        timings: dict[str, float] = {}
        started = mark = time.monotonic()
        requeue_dependency = self.options.requeue_dependency
        self._refuse_unsupported(obj)

        source = await self._source(ctx, obj)
        artifact = artifact_of(source)
        ref = spec.source_ref
        source_name = f"{ref.kind}/{ref.namespace or ctx.namespace}/{ref.name}"
        if source is None:
            raise ReconcileError(
                ARTIFACT_FAILED_REASON,
                f"Source '{source_name}' not found",
                requeue_after=spec.retry_interval_seconds(),
            )
        if artifact is None:
            raise ReconcileError(
                ARTIFACT_FAILED_REASON,
                f"Source '{source_name}' is not ready, artifact not found",
                requeue_after=requeue_dependency,
            )
        revision = artifact.revision
        ctx.status.last_attempted_revision = revision

        await self._check_dependencies(ctx, revision, requeue_dependency)

        try:
            exprs = compile_exprs([e.to_wire() for e in spec.health_check_exprs or []])
        except InvalidCELExpression as err:
            raise StalledError(INVALID_CEL_EXPRESSION_REASON, str(err)) from err

        target = await self._target(ctx, obj)
        objects = await self._desired_objects(ctx, obj, key, artifact, revision, requeue_dependency)
        timings["build"], mark = time.monotonic() - mark, time.monotonic()

        try:
            result = await self._apply_prune_health(ctx, obj, target, objects, exprs, revision, timings)
        except (KubeUnreachableError, aiohttp.ClientError, OSError, TimeoutError) as err:
            raise self._unreachable_error(ctx, obj, target, err) from err
        self._unreachable.pop(key, None)
        origin = (artifact.metadata or {}).get("org.opencontainers.image.revision")
        if origin:
            ctx.status.last_applied_origin_revision = origin
        stored = ctx.stored_status
        was_ready = is_true(stored.get("conditions") or [], READY)
        ctx.set_condition(READY, "True", RECONCILIATION_SUCCEEDED_REASON, f"Applied revision: {revision}")
        if not was_ready or stored.get("lastAppliedRevision") != revision:
            # Flux's success event, which commit-status providers turn into a Git status.
            ctx.event(
                "Normal",
                RECONCILIATION_SUCCEEDED_REASON,
                f"Reconciliation finished in {format_duration(time.monotonic() - started)}, "
                f"next run in {format_duration(spec.interval_seconds())}",
                metadata={"revision": revision, "commit_status": "update"},
            )
        return result

    def _unreachable_error(
        self, ctx: ReconcileContext, obj: Kustomization, target: Target, err: BaseException
    ) -> ReconcileError:
        """The target cluster did not answer: Ready=False saying so, retried with backoff (up to
        spec.retryInterval) while every other Kustomization goes on."""
        key = (ctx.namespace, ctx.name)
        failures = self._unreachable[key] = self._unreachable.get(key, 0) + 1
        delay = min(obj.spec.retry_interval_seconds(), UNREACHABLE_RETRY * 2 ** (failures - 1))
        where = f"the cluster at {target.remote}" if target.remote else "the API server"
        detail = err.detail if isinstance(err, KubeUnreachableError) else str(err) or type(err).__name__
        return ReconcileError(
            RECONCILIATION_FAILED_REASON,
            f"cannot reach {where} ({target.describe()}): {detail}; retrying in {format_duration(delay)}",
            requeue_after=delay,
        )

    async def _apply_prune_health(
        self,
        ctx: ReconcileContext,
        obj: Kustomization,
        target: Target,
        objects: list[dict[str, Any]],
        exprs: list[Any],
        revision: str,
        timings: dict[str, float],
    ) -> Result:
        spec = obj.spec
        mark = time.monotonic()
        if target.remote:
            # The remote cluster's watch caches keep their last state while it is down: ask it first.
            await target.client.request("get", "GET", "/version")
        applier = self._applier(ctx, target)
        options = ApplyOptions(
            force=bool(spec.force),
            concurrency=self.options.concurrent_ssa,
            wait_timeout=spec.timeout_seconds(),
            ignore=[rule.to_wire() for rule in spec.ignore or []],
            override_managers=self.options.override_managers,
        )
        old_inventory = Inventory.from_status((ctx.raw.get("status") or {}).get("inventory"))
        await self._name_before_apply(ctx, applier, objects, old_inventory)
        try:
            changes = await ctx.while_progressing(None, applier.apply_all(objects, options))
        except ApplyError as err:
            # Keep tracking what was applied before the failure so a later prune can find it.
            applied = [Entry(c.ref, split_api_version(c.api_version)[1]) for c in err.changes.entries]
            merged = Inventory([*old_inventory, *(e for e in applied if e.ref not in old_inventory)])
            self._set_inventory(ctx, merged)
            self._report_changes(ctx, err.changes, revision)
            if err.unreachable is not None:
                raise err.unreachable from err
            raise ReconcileError(RECONCILIATION_FAILED_REASON, str(err)) from err
        new_inventory = Inventory.from_objects(objects)
        timings["apply"], mark = time.monotonic() - mark, time.monotonic()

        if spec.prune:
            stale = old_inventory.stale(new_inventory)
            pruned, kept, errors = await delete_entries(applier, stale, ctx.name, ctx.namespace)
            changes.entries.extend(pruned.entries)
            new_inventory = Inventory([*new_inventory, *kept])
            if errors:
                self._set_inventory(ctx, new_inventory)
                self._report_changes(ctx, changes, revision)
                raise ReconcileError(PRUNE_FAILED_REASON, "\n".join(errors))
        self._set_inventory(ctx, new_inventory)
        timings["prune"] = time.monotonic() - mark
        self._report_changes(ctx, changes, revision, timings)

        await self._check_health(ctx, obj, target, objects, changes, exprs, revision)
        ctx.status.last_applied_revision = revision
        return Result()

    async def _name_before_apply(
        self, ctx: ReconcileContext, applier: Applier, objects: list[dict[str, Any]], stored: Inventory
    ) -> None:
        """Write the stored inventory widened by the objects this apply may create: a process
        killed mid-apply leaves no object the inventory does not name. Prune skips entries never
        created (not found) and objects that are not ours (owner labels); an apply that fails
        normally records exactly what it wrote instead."""
        for obj in objects:
            # The namespace the entry names, as the apply sets it; a kind served only once a CRD of
            # this build is applied keeps the namespace it was written with.
            with contextlib.suppress(ResourceNotFoundError):
                await applier.normalize(obj)
        new = [e for e in Inventory.from_objects(objects) if e.ref not in stored]
        if new:
            self._set_inventory(ctx, Inventory([*stored, *new]))
            await ctx.patch_status()

    def _refuse_unsupported(self, obj: Kustomization) -> None:
        spec = obj.spec
        if spec.decryption is not None and spec.decryption.service_account_name:
            raise StalledError(
                RECONCILIATION_FAILED_REASON,
                f"spec.decryption.serviceAccountName '{spec.decryption.service_account_name}' is not "
                "supported by Tide yet (workload identity): nothing was applied; use "
                "spec.decryption.secretRef",
            )
        if spec.kube_config is not None and spec.kube_config.config_map_ref is not None:
            raise StalledError(
                RECONCILIATION_FAILED_REASON,
                f"spec.kubeConfig.configMapRef '{spec.kube_config.config_map_ref.name}' (workload "
                "identity for cloud clusters) is not supported by Tide yet: nothing was applied; use "
                "spec.kubeConfig.secretRef with a kubeconfig Secret",
            )
        if spec.kube_config is not None and spec.kube_config.secret_ref is None:
            raise StalledError(
                RECONCILIATION_FAILED_REASON, "spec.kubeConfig needs a secretRef: nothing was applied"
            )
        if spec.source_ref.kind == "ExternalArtifact" and "ExternalArtifact" not in self._source_kinds():
            raise StalledError(
                ACCESS_DENIED_REASON,
                f"can't access 'ExternalArtifact/{spec.source_ref.namespace or obj.namespace}/"
                f"{spec.source_ref.name}', ExternalArtifact feature gate is disabled",
            )
        if spec.source_ref.kind not in SERVED_SOURCE_KINDS:
            raise StalledError(
                ARTIFACT_FAILED_REASON,
                f"source kind '{spec.source_ref.kind}' is not supported by Tide yet: nothing was "
                f"applied; supported source kinds are {', '.join(SERVED_SOURCE_KINDS)}",
            )

    async def _source(self, ctx: ReconcileContext, obj: Kustomization) -> dict[str, Any] | None:
        ref = obj.spec.source_ref
        namespace = ref.namespace or ctx.namespace
        self._refuse_cross_namespace(ctx, f"{ref.kind} '{ref.name}'", ref.namespace)
        scope = self.controller.namespace if self.controller else None
        return await self._cached_get(ctx, SOURCE_GROUP_VERSION, ref.kind, namespace, ref.name, scope)

    async def _check_dependencies(self, ctx: ReconcileContext, revision: str, requeue: float) -> None:
        deps = dependency_keys(ctx.raw)
        if not deps:
            return
        start = (ctx.namespace, ctx.name)
        informer = self.controller.informer if self.controller else None

        def lookup(key: Key) -> dict[str, Any] | None:
            if key == start:
                return ctx.raw
            return informer.get(*key) if informer is not None else None

        cycle = find_cycle(start, depends_on_edges(lookup))
        if cycle:
            raise ReconcileError(
                DEPENDENCY_NOT_READY_REASON,
                f"circular dependency detected: {format_cycle(cycle)}",
                requeue_after=requeue,
            )
        for dep_key in deps:
            self._refuse_cross_namespace(ctx, f"dependency '{dep_key[1]}'", dep_key[0])
            dep = informer.get(*dep_key) if informer is not None else None
            if dep is None:  # e.g. in another shard: read it live, as Flux does
                found = await ctx.kube.get(KUSTOMIZATION_API, "Kustomization", dep_key[1], dep_key[0])
                dep = found if isinstance(found, dict) else None
            reason = dependency_not_ready(ctx.raw, dep_key, dep, revision)
            if reason:
                raise ReconcileError(DEPENDENCY_NOT_READY_REASON, reason, requeue_after=requeue)

    # --- build ---------------------------------------------------------------------------------------

    async def _variables(self, ctx: ReconcileContext, obj: Kustomization) -> dict[str, str] | None:
        async def get(kind: str, name: str) -> dict[str, Any] | None:
            return await self._cached_get(ctx, "v1", kind, ctx.namespace, name, ctx.namespace)

        try:
            return await substitution_variables(obj.spec.post_build, get)
        except VariablesSourceNotFound as err:
            raise ReconcileError(
                BUILD_FAILED_REASON,
                f"substitute from '{err.kind}/{ctx.namespace}/{err.name}' failed: "
                f'{err.kind.lower()}s "{err.name}" not found',
            ) from err

    async def _keyring_source(
        self, ctx: ReconcileContext, obj: Kustomization
    ) -> tuple[dict[str, bytes], str]:
        """The decryption Secret's data (plus the --sops-age-secret keys) and a version for the cache."""
        decryption = obj.spec.decryption
        if decryption is None:
            return {}, ""
        data: dict[str, bytes] = {}
        versions: list[str] = []
        global_name = self.options.sops_age_secret
        if global_name:
            runtime_ns = self.options.runtime_namespace
            found = await self._cached_get(ctx, "v1", "Secret", runtime_ns, global_name, runtime_ns)
            if found is not None:
                data.update(
                    {f"global-{k}": base64.b64decode(v) for k, v in (found.get("data") or {}).items()}
                )
                versions.append(str((found.get("metadata") or {}).get("resourceVersion", "")))
        if decryption.secret_ref is not None:
            name = decryption.secret_ref.name
            secret = await self._cached_get(ctx, "v1", "Secret", ctx.namespace, name, ctx.namespace)
            if secret is None:
                raise ReconcileError(
                    BUILD_FAILED_REASON, f"decryption secret '{ctx.namespace}/{name}' not found"
                )
            data.update({k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()})
            versions.append(str((secret.get("metadata") or {}).get("resourceVersion", "")))
        return data, "/".join(versions)

    async def _desired_objects(
        self,
        ctx: ReconcileContext,
        obj: Kustomization,
        key: Key,
        artifact: Artifact,
        revision: str,
        requeue_dependency: float,
    ) -> list[dict[str, Any]]:
        variables = await self._variables(ctx, obj)
        keys, keys_version = await self._keyring_source(ctx, obj)
        inputs = digest(
            [
                artifact.digest,
                ctx.generation,
                variables,
                keys_version,
                self.options.no_remote_bases,
            ]
        )
        cached = self.builds.get(key)
        if cached is None or cached.inputs != inputs:
            objects = await ctx.while_progressing(
                f"Building manifests for revision {revision}",
                self._build(ctx, obj, artifact, variables, keys, requeue_dependency),
            )
            cached = CachedBuild(inputs, objects, "sha256:" + digest(objects))
            self.builds[key] = cached
        self._built[key] = (cached.digest, revision)
        objects = copy.deepcopy(cached.objects)
        common = obj.spec.common_metadata
        add_flux_metadata(objects, common.to_wire() if common else None, ctx.name, ctx.namespace)
        return objects

    async def _build(
        self,
        ctx: ReconcileContext,
        obj: Kustomization,
        artifact: Artifact,
        variables: dict[str, str] | None,
        keys: dict[str, bytes],
        requeue_dependency: float,
    ) -> list[dict[str, Any]]:
        try:
            spec = obj.spec.to_wire()
            root = await self.artifacts.checkout(artifact, lambda tree: build_inputs(tree, spec))
        except SourceNotReady as err:
            raise ReconcileError(ARTIFACT_FAILED_REASON, str(err), requeue_after=requeue_dependency) from err
        except ArtifactError as err:
            raise ReconcileError(ARTIFACT_FAILED_REASON, f"failed to fetch artifact: {err}") from err
        try:
            keyring = decrypt.Keyring.from_secret_data(keys) if keys else decrypt.Keyring()
        except decrypt.DecryptionError as err:
            await remove_tree(root)
            raise ReconcileError(BUILD_FAILED_REASON, f"invalid decryption keys: {err}") from err
        try:
            before = None
            if obj.spec.decryption is not None:

                def before(root_dir: Path, directory: Path) -> None:
                    decrypt.decrypt_generator_sources(root_dir, directory, keyring)

            def decrypt_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
                if obj.spec.decryption is None and not any(
                    o.get("kind") == "Secret" and "sops" in o for o in objects
                ):
                    return objects
                return decrypt.decrypt_resources(objects, keyring)

            return await render(
                root,
                spec,
                variables=variables,
                strict=self.options.feature_gates.get(STRICT_SUBSTITUTIONS_GATE, True),
                no_remote_bases=self.options.no_remote_bases,
                limit=obj.spec.timeout_seconds(),
                memory_limit=self.options.build_memory_limit,
                before_build=before,
                decrypt=decrypt_objects,
            )
        except decrypt.DecryptionError as err:
            raise ReconcileError(BUILD_FAILED_REASON, f"decryption failed: {err}") from err
        except BuildNotFinished as err:
            raise ReconcileError(BUILD_FAILED_REASON, str(err)) from err
        except (BuildError, SubstitutionError) as err:
            raise StalledError(BUILD_FAILED_REASON, str(err)) from err
        finally:
            close = getattr(keyring, "close", None)
            if callable(close):
                close()
            await remove_tree(root)

    # --- report --------------------------------------------------------------------------------------

    def _set_inventory(self, ctx: ReconcileContext, inventory: Inventory) -> None:
        ctx.status.inventory = ResourceInventory.model_validate(inventory.to_status())

    def _report_changes(
        self,
        ctx: ReconcileContext,
        changes: ChangeSet,
        revision: str,
        timings: dict[str, float] | None = None,
    ) -> None:
        message = changes.message()
        if message:
            ms = {k: round(v * 1000) for k, v in (timings or {}).items()}
            ctx.log.info(
                "server-side apply completed",
                extra={"revision": revision, "changes": changes.counts(), "durationsMs": ms},
            )
            ctx.event("Normal", PROGRESSING_REASON, message, metadata={"revision": revision})

    # --- health --------------------------------------------------------------------------------------

    async def _check_health(
        self,
        ctx: ReconcileContext,
        obj: Kustomization,
        target: Target,
        objects: list[dict[str, Any]],
        changes: ChangeSet,
        exprs: list[Any],
        revision: str,
    ) -> None:
        spec = obj.spec
        generations = {c.ref: c.generation for c in changes.entries}
        skipped = {c.ref for c in changes.entries if c.action == "skipped"}
        targets: list[HealthTarget] = []
        if spec.wait:
            for o in objects:
                ref = ObjectRef.of(o)
                if ref not in skipped:
                    targets.append(HealthTarget(ref, o["apiVersion"], generations.get(ref)))
        else:
            for check in spec.health_checks or []:
                ref, api_version = await self._health_check_ref(ctx, target.client, check)
                targets.append(HealthTarget(ref, api_version, generations.get(ref)))
        if not targets:
            ctx.remove_condition(HEALTHY)
            return
        applier = self._applier(ctx, target)

        async def get(target: HealthTarget) -> dict[str, Any] | None:
            meta: dict[str, Any] = {"name": target.ref.name}
            if target.ref.namespace:
                meta["namespace"] = target.ref.namespace
            return await applier.live(
                {"apiVersion": target.api_version, "kind": target.ref.kind, "metadata": meta}
            )

        source_ref = spec.source_ref
        scope = self.controller.namespace if self.controller else None

        source_name = f"{source_ref.kind}/{source_ref.namespace or ctx.namespace}/{source_ref.name}"
        queue = self.controller.queue if self.controller else None

        def new_reconcile() -> str | None:
            """Flux's CancelHealthCheckOnNewRevision: a new source revision, or any other new
            reconcile of this Kustomization queued meanwhile (a reconcile request, a spec change)."""
            informer = ctx.kube.informer(SOURCE_GROUP_VERSION, source_ref.kind, namespace=scope)
            current = artifact_of(informer.get(source_ref.namespace or ctx.namespace, source_ref.name))
            if current is not None and current.revision != revision:
                return f"New reconciliation triggered by {source_name}"
            if queue is not None and queue.is_queued((ctx.namespace, ctx.name)):
                return f"New reconciliation triggered by Kustomization/{ctx.namespace}/{ctx.name}"
            return None

        gates = self.options.feature_gates
        canceled = new_reconcile if gates.get(CANCEL_HEALTH_CHECK_GATE, False) else None
        started = time.monotonic()
        timeout = spec.timeout_seconds()
        try:
            # A first look without touching the status: a no-op reconcile of healthy objects is free.
            await wait_for_health(targets, get, exprs, limit=0, poll=0)
        except TimeoutError:
            message = (
                f"Running health checks for revision {revision} with a timeout of {format_duration(timeout)}"
            )
            ctx.set_condition(HEALTHY, "Unknown", PROGRESSING_REASON, message)
            try:
                with applier.changes_of(t.ref for t in targets) as changed:
                    async with ctx.waiting():
                        wait = wait_for_health(
                            targets, get, exprs, limit=timeout, poll=1.0, canceled=canceled, changed=changed
                        )
                        await ctx.while_progressing(message, wait)
            except HealthCheckCanceled as err:
                # As Flux: Healthy stays Unknown; the queued reconcile runs next.
                raise ReconcileError(HEALTH_CHECK_CANCELED_REASON, str(err), requeue_after=0.5) from err
            except (TimeoutError, RuntimeError) as err:
                self._health_failed(ctx, started, err)
        except RuntimeError as err:
            self._health_failed(ctx, started, err)
        current = ctx.get_condition(HEALTHY)
        if not current or current.get("status") != "True":
            ctx.set_condition(
                HEALTHY, "True", SUCCEEDED_REASON, f"Health check passed in {time.monotonic() - started:.3f}s"
            )

    async def _health_check_ref(
        self, ctx: ReconcileContext, kube: KubeClient, check: NamespacedObjectKindReference
    ) -> tuple[ObjectRef, str]:
        """A spec.healthChecks entry as Flux reads it: without apiVersion (as `flux create
        kustomization --health-check=Kind/name.namespace` writes it) the API server's preferred
        version of the kind; without namespace, the Kustomization's for a namespaced kind."""
        what = f"health check {check.kind}/{check.name}"
        try:
            api_version = check.api_version or await kube.preferred_api_version(check.kind)
            info = await kube.resource(api_version, check.kind)
        except ResourceNotFoundError as err:
            served = f" in {err.api_version}" if err.api_version else ""
            raise ReconcileError(
                HEALTH_CHECK_FAILED_REASON,
                f"{what}: the API server does not serve the kind {check.kind}{served}; "
                "check the kind and apiVersion, or install its CustomResourceDefinition",
            ) from err
        namespace = (check.namespace or ctx.namespace) if info.namespaced else ""
        group, _ = split_api_version(api_version)
        return ObjectRef(group, check.kind, namespace, check.name), api_version

    def _health_failed(self, ctx: ReconcileContext, started: float, err: Exception) -> None:
        message = f"Health check failed after {time.monotonic() - started:.3f}s: {err}"
        ctx.set_condition(HEALTHY, "False", HEALTH_CHECK_FAILED_REASON, message)
        raise ReconcileError(HEALTH_CHECK_FAILED_REASON, message) from err

    # --- deletion ------------------------------------------------------------------------------------

    async def finalize(self, obj: Kustomization, ctx: ReconcileContext) -> None:
        spec = obj.spec
        self.builds.pop((ctx.namespace, ctx.name), None)
        policy = spec.effective_deletion_policy()
        if not should_delete_on_finalize(policy, bool(spec.prune), bool(spec.suspend)):
            return
        inventory = Inventory.from_status((ctx.raw.get("status") or {}).get("inventory"))
        entries = list(reversed(list(inventory)))
        if not entries:
            return
        target = await self._finalize_target(ctx, obj)
        if target is None:
            return
        applier = self._applier(ctx, target)
        changes, _, errors = await delete_entries(applier, entries, ctx.name, ctx.namespace)
        if changes.entries:
            ctx.event("Normal", PROGRESSING_REASON, changes.message())
        if errors:
            raise ReconcileError(PRUNE_FAILED_REASON, "\n".join(errors))
        if policy == "WaitForTermination":
            remaining = await wait_terminated(applier, [e for e in entries], spec.timeout_seconds())
            if remaining:
                raise ReconcileError(
                    PRUNE_FAILED_REASON, "timeout waiting for termination of: " + ", ".join(remaining)
                )

    async def _finalize_target(self, ctx: ReconcileContext, obj: Kustomization) -> Target | None:
        """Who deletes the inventory, as Flux: nobody when the ServiceAccount to impersonate is gone
        (the tenant was removed first) or the kubeconfig Secret is; the objects are left in place."""
        try:
            target = await self._target(ctx, obj)
        except ReconcileError as err:
            ctx.event("Warning", PRUNE_FAILED_REASON, f"garbage collection skipped: {err.message}")
            return None
        missing = await self._targets(ctx).missing_service_account(
            target, ctx.namespace, obj.spec.service_account_name
        )
        if missing is not None:
            ctx.event("Warning", PRUNE_FAILED_REASON, f"garbage collection skipped: {missing}")
            return None
        return target
