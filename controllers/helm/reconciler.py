"""The HelmRelease reconcile, in Flux's helm-controller order: refuse what is not supported,
wait for dependencies, get the chart (the HelmChart made from spec.chart, or spec.chartRef),
download and verify it, compose the values, then the atomic release loop (install, upgrade,
test, remediate, unlock) with the status patched between steps. Deletion uninstalls."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tide.controllers.helm import history
from tide.controllers.helm.actions import ActionRunner, rollback_target, uninstall_options
from tide.controllers.helm.atomic import AtomicRelease, LoopResult
from tide.controllers.helm.chart_source import (
    CHART_REF_KINDS,
    EXTERNAL_ARTIFACT,
    SOURCE_API,
    AppliedChart,
    ChartInvalid,
    ChartSourceNotReady,
    chart_directory,
    chart_metadata,
    chart_needs_apply,
    chart_source_artifact,
    helm_chart_object,
    oci_chart_version,
    set_chart_version,
    versioned_by_digest,
)
from tide.controllers.helm.drift import CONCURRENCY as DRIFT_CONCURRENCY
from tide.controllers.helm.drift import DriftError
from tide.controllers.helm.engine import EngineError, HelmEngine, Target
from tide.controllers.helm.health_wait import TERMINAL_PREFIX, health_exprs
from tide.controllers.helm.postrender import (
    PostRenderSpec,
    common_metadata_digest,
    kustomizations,
    post_renderers_digest,
)
from tide.controllers.helm.release_status import (
    attempt_changed,
    cross_namespace_ref,
    dependency_not_ready,
    ending,
    external_artifact_denied,
    ready_from,
    requests,
    spec_observed,
    unsupported,
)
from tide.controllers.helm.state import Desired, ReleaseState, UnknownReleaseStatus
from tide.controllers.helm.storage import ReconcileStorage, ReleaseStorage, StorageError
from tide.controllers.helm.values import ValuesError, compose_values, config_digest
from tide.shared.api.artifact_generator import EXTERNAL_ARTIFACT_GATE
from tide.shared.api.helm import HelmRelease
from tide.shared.api.meta import Artifact, parse_duration
from tide.shared.artifact import ArtifactError
from tide.shared.artifact.fetch import ArtifactCache, SourceNotReady, remove_tree
from tide.shared.kube.config import load_connection
from tide.shared.kube.health import CompiledExpr, InvalidCELExpression
from tide.shared.kube.informer import Informer
from tide.shared.kube.kubeconfig_secret import KubeconfigSecretError
from tide.shared.kube.targets import Target as KubeTarget
from tide.shared.kube.targets import TargetClients
from tide.shared.runtime.conditions import ACCESS_DENIED_REASON, INVALID_CEL_EXPRESSION_REASON
from tide.shared.runtime.context import ReconcileContext
from tide.shared.runtime.kind_controller import KindController
from tide.shared.runtime.process import feature_gates, kubeconfig_policy, source_storage_addresses
from tide.shared.runtime.reconciler import FLUX_FINALIZER, Reconciler
from tide.shared.runtime.result import ReconcileError, Result, StalledError

HELMRELEASE_API = HelmRelease.storage_api_version()
# Indexes of the HelmReleases' cache: by chart source, by dependency, by ConfigMap/Secret of values.
CHART_INDEX = "chart"
DEPENDS_ON_INDEX = "dependsOn"
VALUES_INDEX = "valuesFrom"
REST_CLIENT_ERROR = "RESTClientError"
"""Ready's reason when the release's client (spec.kubeConfig) cannot be built, as Flux's."""
DEFAULT_RETRY_INTERVAL = 300.0
"""RetryOnFailure's retryInterval when unset (Flux's 5m)."""
CHART_CACHE_SIZE = 16
"""Extracted charts kept on disk, the least recently used out first."""
Key = tuple[str, str]


def _ready(obj: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    status = (obj or {}).get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return ready.get("status"), status.get("observedGeneration"), (status.get("artifact") or {}).get("digest")


def generated_chart_key(hr: dict[str, Any]) -> str | None:
    """`namespace/name` of the HelmChart a HelmRelease's spec.chart makes (HelmRelease.helm_chart_name,
    on the raw object): a chart that turns Ready before status.helmChart is written still wakes its
    release (not its creation: the reconcile that created it is still running)."""
    meta, chart = hr.get("metadata") or {}, (hr.get("spec") or {}).get("chart")
    if not isinstance(chart, dict):
        return None
    source = (chart.get("spec") or {}).get("sourceRef") or {}
    namespace = meta.get("namespace")
    return f"{source.get('namespace') or namespace}/{namespace}-{meta.get('name')}"


def chart_source_keys(hr: dict[str, Any]) -> list[tuple[str, str]]:
    """The chart index of the HelmReleases' cache: (kind, `namespace/name`) of every chart source a
    release may read (its chartRef, its generated HelmChart, the HelmChart its status names)."""
    namespace = (hr.get("metadata") or {}).get("namespace")
    spec, status = hr.get("spec") or {}, hr.get("status") or {}
    keys = []
    ref = spec.get("chartRef")
    if isinstance(ref, dict) and ref.get("kind"):
        keys.append((str(ref["kind"]), f"{ref.get('namespace') or namespace}/{ref.get('name')}"))
    for chart in (generated_chart_key(hr), status.get("helmChart")):
        if chart:
            keys.append(("HelmChart", str(chart)))
    return keys


def dependency_keys(hr: dict[str, Any]) -> list[tuple[str, str]]:
    """The dependsOn index: (namespace, name) of each release a HelmRelease waits for."""
    namespace = str((hr.get("metadata") or {}).get("namespace") or "")
    return [
        (str(ref.get("namespace") or namespace), str(ref.get("name")))
        for ref in (hr.get("spec") or {}).get("dependsOn") or []
        if isinstance(ref, dict)
    ]


def values_source_keys(hr: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The valuesFrom index: (kind, namespace, name) of each ConfigMap and Secret a release reads."""
    namespace = str((hr.get("metadata") or {}).get("namespace") or "")
    return [
        (str(ref.get("kind")), namespace, str(ref.get("name")))
        for ref in (hr.get("spec") or {}).get("valuesFrom") or []
        if isinstance(ref, dict)
    ]


def _changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    return old is None or _ready(old) != _ready(new)


class HelmReleaseReconciler(Reconciler[HelmRelease]):
    model = HelmRelease
    finalizer = FLUX_FINALIZER
    # Its first write is the atomic release's, before an action (or the failure); the steps before
    # it that can take long run under ctx.while_progressing.
    reports_progress = True

    def __init__(self, options: argparse.Namespace | None = None) -> None:
        self.options = options
        self.engine: HelmEngine | None = None
        self.controller: KindController | None = None
        self.targets: TargetClients | None = None
        self.dry_runs: asyncio.Semaphore | None = None
        # Charts by digest: HelmReleases of one chart (one HelmChart each, as Flux makes them, or
        # one shared chartRef) download and extract it once (see _chart_files).
        self.charts = ArtifactCache(keep=CHART_CACHE_SIZE, storage=source_storage_addresses(options))
        self.helm_charts: Informer | None = None
        """The HelmCharts watched (their readiness enqueues releases): what `_ensure_helm_chart` compares."""
        self.applied_charts: dict[str, AppliedChart] = {}

    # --- the Helm engine, a server of the process ------------------------------------------------

    async def start(self) -> None:
        kubeconfig = getattr(self.options, "kubeconfig", None)
        concurrency = int(getattr(self.options, "concurrent", 4))
        self.engine = HelmEngine(await load_connection(kubeconfig), concurrency=concurrency)
        await self.engine.start()
        self.dry_runs = asyncio.Semaphore(DRIFT_CONCURRENCY)

    async def stop(self) -> None:
        if self.targets is not None:
            await self.targets.close()
            self.targets = None
        if self.engine is not None:
            await self.engine.close()
            self.engine = None
        await self.charts.stop()

    # --- watches ---------------------------------------------------------------------------------

    def setup(self, controller: KindController) -> None:
        """Reconcile a HelmRelease when its chart source gets a new artifact or readiness, when a
        dependency's readiness changes, and when a watched ConfigMap or Secret it reads changes."""
        self.controller = controller
        if controller.informer is not None:
            controller.informer.add_index(CHART_INDEX, chart_source_keys)
            controller.informer.add_index(DEPENDS_ON_INDEX, dependency_keys)
            controller.informer.add_index(VALUES_INDEX, values_source_keys)
        for kind in self._chart_ref_kinds():
            informer = controller.watch(
                SOURCE_API,
                kind,
                self._users_of_chart(kind),
                namespace=controller.namespace,
                predicate=_changed,
            )
            if kind == "HelmChart":
                self.helm_charts = informer
        controller.watch(
            HELMRELEASE_API,
            "HelmRelease",
            self._dependents_of,
            namespace=controller.namespace,
            predicate=_changed,
        )
        selector = getattr(self.options, "watch_configs_label_selector", "") or None
        if selector:
            for kind in ("ConfigMap", "Secret"):
                controller.watch(
                    "v1",
                    kind,
                    self._readers_of(kind),
                    namespace=controller.namespace,
                    label_selector=selector,
                )

    def _external_artifacts_allowed(self) -> bool:
        gates = feature_gates(self.options) if self.options is not None else {}
        return gates.get(EXTERNAL_ARTIFACT_GATE, True)

    def _chart_ref_kinds(self) -> tuple[str, ...]:
        """The chart source kinds watched: ExternalArtifacts only with their feature gate (Flux)."""
        allowed = self._external_artifacts_allowed()
        return tuple(k for k in CHART_REF_KINDS if allowed or k != EXTERNAL_ARTIFACT)

    @staticmethod
    def _key(hr: dict[str, Any]) -> Key:
        meta = hr.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def _indexed(self, index: str, value: Any) -> list[dict[str, Any]]:
        informer = getattr(self.controller, "informer", None)
        return informer.by_index(index, value) if informer is not None else []

    def _users_of_chart(self, kind: str) -> Any:
        def keys(source: dict[str, Any]) -> Iterable[Key]:
            meta = source.get("metadata") or {}
            source_key = f"{meta.get('namespace')}/{meta.get('name')}"
            for hr in self._indexed(CHART_INDEX, (kind, source_key)):
                namespace, _ = self._key(hr)
                spec, status = hr.get("spec") or {}, hr.get("status") or {}
                ref = spec.get("chartRef") or {}
                if kind == "HelmChart" and (
                    status.get("helmChart") == source_key
                    or (_ready(source)[0] == "True" and generated_chart_key(hr) == source_key)
                ):
                    yield self._key(hr)
                elif ref.get("kind") == kind and f"{ref.get('namespace') or namespace}/{ref.get('name')}" == (
                    source_key
                ):
                    yield self._key(hr)

        return keys

    def _dependents_of(self, dep: dict[str, Any]) -> Iterable[Key]:
        return [self._key(hr) for hr in self._indexed(DEPENDS_ON_INDEX, self._key(dep))]

    def _readers_of(self, kind: str) -> Any:
        def keys(obj: dict[str, Any]) -> Iterable[Key]:
            namespace, name = self._key(obj)
            return [self._key(hr) for hr in self._indexed(VALUES_INDEX, (kind, namespace, name))]

        return keys

    # --- the reconcile ----------------------------------------------------------------------------

    def _engine(self) -> HelmEngine:
        if self.engine is None:
            raise ReconcileError("ReconciliationFailed", "the Helm engine is not running")
        return self.engine

    def _targets(self, ctx: ReconcileContext) -> TargetClients:
        if self.targets is None or self.targets.kube is not ctx.kube:
            options = ctx.options
            policy = kubeconfig_policy(options) if hasattr(options, "insecure_kubeconfig_exec") else None
            account = str(getattr(options, "default_service_account", "") or "")
            self.targets = TargetClients(ctx.kube, policy, account)
        return self.targets

    async def _kube_target(self, obj: HelmRelease, ctx: ReconcileContext) -> KubeTarget:
        """Who Helm acts as for this release, and on which cluster, as Flux: the ServiceAccount of
        spec.serviceAccountName (else --default-service-account) through impersonation, on the
        cluster of spec.kubeConfig's Secret (else this one). Release storage is read the same way."""
        spec = obj.spec
        kubeconfig = None
        if spec.kube_config is not None and spec.kube_config.secret_ref is not None:
            kubeconfig = (spec.kube_config.secret_ref.name, spec.kube_config.secret_ref.key)

        async def get_secret(namespace: str, name: str) -> dict[str, Any] | None:
            found = await ctx.kube.get("v1", "Secret", name, namespace)
            return found if isinstance(found, dict) else None

        try:
            return await self._targets(ctx).target(
                ctx.namespace, spec.service_account_name, kubeconfig, get_secret
            )
        except KubeconfigSecretError as err:
            raise ReconcileError(REST_CLIENT_ERROR, f"invalid spec.kubeConfig: {err}") from err

    def _release_target(
        self, obj: HelmRelease, kube: KubeTarget, name: str, namespace: str, storage: str
    ) -> Target:
        origin = (obj.metadata.namespace or "", obj.metadata.name or "")
        return Target(name, namespace, storage, route=self._engine().route(kube), origin=origin)

    def _requeue_dependency(self, ctx: ReconcileContext) -> float:
        return float(getattr(ctx.options, "requeue_dependency", 30.0))

    async def reconcile(self, obj: HelmRelease, ctx: ReconcileContext) -> Result:
        why = unsupported(obj)
        if why is not None:
            raise StalledError("UnsupportedSpec", why)
        try:
            exprs = health_exprs(obj)
        except InvalidCELExpression as err:
            raise StalledError(INVALID_CEL_EXPRESSION_REASON, f"{TERMINAL_PREFIX}: {err}", str(err)) from err
        if getattr(ctx.options, "no_cross_namespace_refs", False):
            denied = cross_namespace_ref(obj)
            if denied is not None:
                raise StalledError(ACCESS_DENIED_REASON, denied)
        denied = external_artifact_denied(obj, self._external_artifacts_allowed())
        if denied is not None:
            raise StalledError(ACCESS_DENIED_REASON, denied)
        await self._check_dependencies(obj, ctx)
        artifact, source_name, kind = await self._chart_artifact(obj, ctx)
        async with self._chart_files(ctx, artifact, source_name, kind) as root:
            chart, name, version, source_digest = self._load_chart(artifact, source_name, kind, root)
            values = await self._values(obj, ctx)
            return await self._release(
                obj,
                ctx,
                str(chart),
                values,
                Desired(
                    chart_name=name,
                    chart_version=version,
                    config_digest=config_digest(values),
                    post_renderers_digest=post_renderers_digest(obj.spec.post_renderers),
                    common_metadata_digest=common_metadata_digest(obj.spec.common_metadata),
                    source_digest=source_digest,
                ),
                exprs,
            )

    async def _check_dependencies(self, obj: HelmRelease, ctx: ReconcileContext) -> None:
        for ref in obj.spec.depends_on or []:
            key = (ref.namespace or ctx.namespace, ref.name)
            informer = getattr(self.controller, "informer", None)
            dep = informer.get(*key) if informer is not None else None
            if dep is None:  # outside the watched namespaces: read it live, as Flux does
                found = await ctx.kube.get(HELMRELEASE_API, "HelmRelease", key[1], key[0])
                dep = found if isinstance(found, dict) else None
            reason = dependency_not_ready(dep, key)
            if reason:
                raise ReconcileError(
                    "DependencyNotReady",
                    f"{reason}, retrying in {self._requeue_dependency(ctx):g}s",
                    requeue_after=self._requeue_dependency(ctx),
                )

    async def _chart_artifact(
        self, obj: HelmRelease, ctx: ReconcileContext
    ) -> tuple[dict[str, Any], str, str]:
        """The chart source's ready artifact, its name, and its kind."""
        if obj.spec.chart is not None:
            source = await self._ensure_helm_chart(obj, ctx)
            kind, namespace, name = "HelmChart", obj.helm_chart_namespace(), obj.helm_chart_name()
        else:
            ref = obj.spec.chart_ref
            assert ref is not None
            await self._delete_helm_chart(obj, ctx)  # from a spec.chart this release had before
            kind, namespace, name = ref.kind, ref.namespace or ctx.namespace, ref.name
            found = await ctx.kube.get(SOURCE_API, kind, name, namespace)
            source = found if isinstance(found, dict) else None
        what = f"{kind} '{namespace}/{name}'"
        if source is None:
            raise ReconcileError(
                "ArtifactFailed",
                f"could not get {what}: not found",
                requeue_after=self._requeue_dependency(ctx),
            )
        try:
            artifact = chart_source_artifact(kind, source, what)
        except ChartSourceNotReady as err:
            raise ReconcileError(
                "ArtifactFailed", str(err), requeue_after=self._requeue_dependency(ctx)
            ) from err
        return artifact, what, kind

    async def _ensure_helm_chart(self, obj: HelmRelease, ctx: ReconcileContext) -> dict[str, Any] | None:
        """Create or update the HelmChart of spec.chart (and delete the one it replaces)."""
        wanted = helm_chart_object(obj)
        meta = wanted["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        previous = obj.status.helm_chart
        if previous and previous != key:
            old_namespace, _, old_name = previous.partition("/")
            await ctx.kube.delete(SOURCE_API, "HelmChart", old_name, old_namespace)
            self.applied_charts.pop(previous, None)
        namespace, name = str(meta["namespace"]), str(meta["name"])
        chart = self.helm_charts.get(namespace, name) if self.helm_charts is not None else None
        if chart_needs_apply(wanted, self.applied_charts.get(key), chart):
            chart = await ctx.kube.apply(wanted, field_manager=ctx.field_manager)
            generation = (chart.get("metadata") or {}).get("generation")
            if isinstance(generation, int):
                self.applied_charts[key] = AppliedChart(wanted, generation)
        # Written with the reconcile's next status patch (as Flux's, at its end): a HelmChart not
        # ready yet ends the reconcile with one, an action begins with one.
        obj.status.helm_chart = key
        return chart

    @contextlib.asynccontextmanager
    async def _chart_files(
        self, ctx: ReconcileContext, artifact: dict[str, Any], source_name: str, kind: str
    ) -> AsyncIterator[Path]:
        """The chart artifact's files: the cached tree itself, which Helm only reads, or a private
        copy where the chart's version is rewritten (an OCI digest)."""
        async with contextlib.AsyncExitStack() as held:
            try:
                # Only url and digest are read: the other required fields may be left unset.
                unset = {"path": "", "revision": "", "lastUpdateTime": ""}
                wanted = Artifact.model_validate({**unset, **artifact})
                if versioned_by_digest(kind, wanted.revision):
                    root = await ctx.while_progressing(None, self.charts.checkout(wanted))
                    held.push_async_callback(remove_tree, root)
                else:
                    borrowed = self.charts.borrow(wanted)
                    root = await ctx.while_progressing(None, held.enter_async_context(borrowed))
            except SourceNotReady as err:
                raise ReconcileError("ArtifactFailed", f"chart of {source_name} not found: {err}") from err
            except (ArtifactError, ValidationError) as err:
                raise ReconcileError(
                    "ArtifactFailed", f"failed to fetch the chart of {source_name}: {err}"
                ) from err
            yield root

    def _load_chart(
        self, artifact: dict[str, Any], source_name: str, kind: str, root: Path
    ) -> tuple[Path, str, str, str]:
        """The chart directory, name and version as released, and the source digest the version
        carries (empty when it carries none)."""
        try:
            chart = chart_directory(root)
            name, version = chart_metadata(chart)
            revision, source_digest = str(artifact.get("revision", "")), ""
            if versioned_by_digest(kind, revision):
                version, source_digest = oci_chart_version(version, revision)
                set_chart_version(chart, version)
        except ChartInvalid as err:
            raise ReconcileError("ArtifactFailed", f"chart of {source_name}: {err}") from err
        return chart, name, version, source_digest

    async def _values(self, obj: HelmRelease, ctx: ReconcileContext) -> dict[str, Any]:
        data: dict[tuple[str, str], dict[str, str] | None] = {}
        for ref in obj.spec.values_from or []:
            if (ref.kind, ref.name) in data:
                continue
            found = await ctx.kube.get("v1", ref.kind, ref.name, ctx.namespace)
            if not isinstance(found, dict):
                data[(ref.kind, ref.name)] = None
            elif ref.kind == "Secret":
                raw = found.get("data") or {}
                data[(ref.kind, ref.name)] = {
                    k: base64.b64decode(v).decode(errors="replace") for k, v in raw.items()
                }
            else:
                data[(ref.kind, ref.name)] = {k: str(v) for k, v in (found.get("data") or {}).items()}
        try:
            return compose_values(
                obj.spec.values_from or [],
                ctx.namespace,
                lambda kind, name: data.get((kind, name)),
                obj.spec.values,
            )
        except ValuesError as err:
            raise ReconcileError("ValuesError", str(err)) from err

    # --- the release ------------------------------------------------------------------------------

    async def _release(
        self,
        obj: HelmRelease,
        ctx: ReconcileContext,
        chart: str,
        values: dict[str, Any],
        desired: Desired,
        exprs: list[CompiledExpr],
    ) -> Result:
        status = obj.status
        engine = self._engine()
        kube = await self._kube_target(obj, ctx)
        target = self._release_target(
            obj, kube, obj.release_name(), obj.release_namespace(), obj.storage_namespace()
        )
        await ctx.while_progressing(None, self._uninstall_moved_release(obj, ctx, target, desired))
        status.storage_namespace = target.storage_namespace

        annotations = obj.metadata.annotations or {}
        asked = requests(annotations, status.last_handled_force_at, status.last_handled_reset_at)
        if asked.reset is not None or attempt_changed(obj, desired.chart_version, desired.config_digest):
            status.failures = status.install_failures = status.upgrade_failures = None
        if asked.reset is not None:
            status.last_handled_reset_at = asked.reset
        if asked.force is not None:
            status.last_handled_force_at = asked.force
        status.last_attempted_generation = obj.metadata.generation
        status.last_attempted_revision = desired.chart_version
        status.last_attempted_config_digest = desired.config_digest
        status.last_attempted_revision_digest = desired.source_digest or None

        storage = ReconcileStorage(kube.client, target.storage_namespace)
        labels = dict((obj.spec.common_metadata.labels if obj.spec.common_metadata else None) or {})
        notes = dict((obj.spec.common_metadata.annotations if obj.spec.common_metadata else None) or {})
        runner = ActionRunner(
            engine,
            storage,
            obj,
            target,
            chart,
            values,
            desired,
            PostRenderSpec(
                name=ctx.name,
                namespace=ctx.namespace,
                labels=labels,
                annotations=notes,
                kustomize=kustomizations(obj.spec.post_renderers),
            ),
            # Drift detection, its correction, CRDs and the healthCheckExprs wait act as the release
            # does (Flux's client getter).
            kube=kube.client,
            exprs=exprs,
            dry_runs=self.dry_runs,
        )
        revision = {"revision": desired.chart_version}

        def emit_events() -> None:
            for type_, reason, message in runner.events:
                ctx.event(type_, reason, message, metadata=revision)
            runner.events.clear()

        async def patch_status() -> None:
            emit_events()
            await ctx.patch_status()

        loop = AtomicRelease(
            observe=lambda: storage.latest(target.name),
            run=runner,
            patch_status=patch_status,
            rollback_target=lambda snap: rollback_target(storage, snap),
            drifted=runner.detect_drift,
            observed=runner.observed,
        )
        try:
            result = await loop.reconcile(obj, desired, force_requested=asked.force is not None)
        except (EngineError, StorageError, UnknownReleaseStatus, DriftError) as err:
            emit_events()
            raise ReconcileError("ReconciliationFailed", f"{type(err).__name__}: {err}") from err
        # The status is written once the reconcile ends (with Ready summarised), as Flux's is.
        emit_events()
        return self._finish(obj, ctx, result, desired)

    def _finish(
        self, obj: HelmRelease, ctx: ReconcileContext, result: LoopResult, desired: Desired
    ) -> Result:
        if result.last_state is ReleaseState.IN_SYNC:
            ctx.remove_condition("Remediated")  # in sync again: an old remediation no longer counts
        test = obj.spec.test
        summary = ready_from(ctx.conditions, bool(test and test.enable and not test.ignore_failures))
        if summary is not None:
            ctx.set_condition("Ready", *summary)
        if spec_observed(result.outcome, summary):
            obj.status.observed_post_renderers_digest = desired.post_renderers_digest or None
            obj.status.observed_common_metadata_digest = desired.common_metadata_digest or None
        strategy = (
            obj.spec.install if obj.status.last_attempted_release_action == "install" else obj.spec.upgrade
        )
        retry = strategy.strategy.retry_interval if strategy and strategy.strategy else None
        end = ending(
            result.outcome,
            summary,
            str(result.stall or ""),
            result.message,
            parse_duration(retry) if retry else DEFAULT_RETRY_INTERVAL,
        )
        if end.stall is not None:
            raise StalledError(*end.stall)
        if end.error is not None:
            raise ReconcileError(*end.error)
        if end.requeue_after is not None:
            return Result(requeue_after=end.requeue_after)
        latest = history.latest(obj.status.history)
        if latest is None and summary is None:
            ctx.set_condition("Ready", "True", "ReconciliationSucceeded", "Release reconciled")
        return Result()

    async def _uninstall_moved_release(
        self, obj: HelmRelease, ctx: ReconcileContext, target: Target, desired: Desired
    ) -> None:
        """A new release name, namespace, storage namespace or chart name: Flux uninstalls the
        release it made before and installs the new one."""
        latest = history.latest(obj.status.history)
        if latest is None:
            return
        old_storage = obj.status.storage_namespace or target.storage_namespace
        moved = (latest.name, latest.namespace, old_storage) != (
            target.name,
            target.namespace,
            target.storage_namespace,
        )
        if not moved and latest.chart_name == desired.chart_name:
            return
        old = Target(latest.name, latest.namespace, old_storage, target.route, target.origin)
        await self._uninstall(obj, ctx, old)
        obj.status.history = None
        obj.status.failures = obj.status.install_failures = obj.status.upgrade_failures = None
        for type_ in ("Released", "TestSuccess", "Remediated"):
            ctx.remove_condition(type_)

    async def _uninstall(self, obj: HelmRelease, ctx: ReconcileContext, target: Target) -> None:
        name = f"{target.namespace}/{target.name}"
        try:
            await self._engine().uninstall(target, uninstall_options(obj))
        except EngineError as err:
            raise ReconcileError(
                "UninstallFailed", f"Helm uninstall failed for release {name}: {err}"
            ) from err
        obj.status.inventory = None
        ctx.event("Normal", "UninstallSucceeded", f"Helm uninstall succeeded for release {name}")

    # --- deletion ---------------------------------------------------------------------------------

    async def finalize(self, obj: HelmRelease, ctx: ReconcileContext) -> None:
        """Uninstall the release (unless suspended, as Flux) and delete the HelmChart of spec.chart."""
        kube = None if obj.spec.suspend else await self._finalize_target(obj, ctx)
        if kube is not None:
            latest = history.latest(obj.status.history)
            storage_namespace = obj.status.storage_namespace or obj.storage_namespace()
            name, namespace = (
                (latest.name, latest.namespace)
                if latest is not None
                else (obj.release_name(), obj.release_namespace())
            )
            target = self._release_target(obj, kube, name, namespace, storage_namespace)
            stored = await ReleaseStorage(kube.client, storage_namespace).latest(target.name)
            if stored is not None and stored.status != "uninstalled":
                await self._uninstall(obj, ctx, target)
        await self._delete_helm_chart(obj, ctx)

    async def _finalize_target(self, obj: HelmRelease, ctx: ReconcileContext) -> KubeTarget | None:
        """Who uninstalls, as Flux: nobody when the ServiceAccount to impersonate is gone (the
        tenant was removed first) or the kubeConfig Secret is; the release is left in place."""
        try:
            kube = await self._kube_target(obj, ctx)
        except ReconcileError as err:
            ctx.event("Warning", "UninstallFailed", f"uninstall skipped: {err.message}")
            return None
        missing = await self._targets(ctx).missing_service_account(
            kube, ctx.namespace, obj.spec.service_account_name
        )
        if missing is not None:
            ctx.event("Warning", "UninstallFailed", f"uninstall skipped: {missing}")
            return None
        return kube

    async def _delete_helm_chart(self, obj: HelmRelease, ctx: ReconcileContext) -> None:
        if obj.status.helm_chart:
            namespace, _, name = obj.status.helm_chart.partition("/")
            await ctx.kube.delete(SOURCE_API, "HelmChart", name, namespace)
            self.applied_charts.pop(obj.status.helm_chart, None)
            obj.status.helm_chart = None
