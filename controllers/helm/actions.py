"""The actions the atomic loop runs, each a Helm call through the engine and Flux's status record.

Each returns True only when it errored before Helm recorded anything (Flux returns that error);
a release Helm recorded as failed is counted (failures, installFailures/upgradeFailures), put in
status.history and left to the loop to remediate. Condition types, reasons and messages are Flux's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tide.controllers.helm import history
from tide.controllers.helm.crds import CRDError, apply_crds, chart_crds, with_origin
from tide.controllers.helm.drift import (
    DriftError,
    DriftReport,
    correct,
    correction_report,
    detect,
    detected_message,
)
from tide.controllers.helm.engine import (
    EngineError,
    HelmEngine,
    InstallOptions,
    ReleaseFailed,
    RollbackOptions,
    Target,
    TestOptions,
    UninstallOptions,
    UpgradeOptions,
)
from tide.controllers.helm.health_wait import (
    ReleaseWaitFailed,
    action_error,
    helm_strategy,
    hold,
    settle,
    wait_release,
    waits_itself,
)
from tide.controllers.helm.inventory import (
    BUILD_FAILED_REASON,
    NAMESPACE_CHECK_SKIPPED_REASON,
    InventoryBuildFailed,
    release_inventory,
    release_manifest_objects,
    unscoped_kinds,
)
from tide.controllers.helm.postrender import PostRenderSpec
from tide.controllers.helm.state import (
    Action,
    Decision,
    Desired,
    ReleaseState,
    RollbackTarget,
    drift_condition,
    ignores_test_failures,
)
from tide.controllers.helm.storage import (
    ReconcileStorage,
    ReleaseStorage,
    StoredRelease,
    digest_matches,
    snapshot,
)
from tide.shared.api.helm import HelmRelease, ReleaseSnapshot
from tide.shared.api.meta import Condition, ResourceInventory, parse_duration
from tide.shared.kube import KubeClient
from tide.shared.kube.errors import KubeApiError
from tide.shared.kube.health import CompiledExpr
from tide.shared.runtime import conditions as cond

log = logging.getLogger(__name__)

RELEASED, TEST_SUCCESS, REMEDIATED, DRIFTED = "Released", "TestSuccess", "Remediated", "Drifted"


def _seconds(value: str | None, default: float) -> int:
    return int(parse_duration(value) if value else default)


def wait_strategy(hr: HelmRelease, disable_wait: bool | None) -> str:
    """Helm's wait strategy for an action (Flux's getWaitStrategy): hooks only when the action
    disables waiting, else spec.waitStrategy (`poller` is Helm's kstatus watcher, `legacy` Helm
    v3's waiting), by default the watcher."""
    if disable_wait:
        return "hookOnly"
    if hr.spec.wait_strategy is not None and hr.spec.wait_strategy.name == "legacy":
        return "legacy"
    return "watcher"


def install_options(hr: HelmRelease) -> InstallOptions:
    spec = hr.spec.effective_install()
    return InstallOptions(
        timeout_seconds=_seconds(spec.timeout, hr.spec.timeout_seconds()),
        wait=wait_strategy(hr, spec.disable_wait),
        wait_for_jobs=not spec.disable_wait_for_jobs,
        skip_crds=True,  # the controller applies them (install.crds), as Flux does
        disable_hooks=bool(spec.disable_hooks),
        take_ownership=not spec.disable_take_ownership,
        force_replace=bool(spec.replace),
        disable_openapi_validation=bool(spec.disable_open_api_validation),
        skip_schema_validation=bool(spec.disable_schema_validation),
        server_side_apply=spec.server_side_apply is not False,
        create_namespace=bool(spec.create_namespace),
        post_render_strategy=hr.spec.post_render_strategy,
    )


_SSA = {"enabled": "true", "disabled": "false", "auto": "auto", None: "auto"}
Options = TypeVar("Options", UpgradeOptions, RollbackOptions)
WaitOptions = TypeVar("WaitOptions", InstallOptions, UpgradeOptions, RollbackOptions)
Answer = TypeVar("Answer")


def upgrade_options(hr: HelmRelease) -> UpgradeOptions:
    spec = hr.spec.effective_upgrade()
    return UpgradeOptions(
        timeout_seconds=_seconds(spec.timeout, hr.spec.timeout_seconds()),
        wait=wait_strategy(hr, spec.disable_wait),
        wait_for_jobs=not spec.disable_wait_for_jobs,
        skip_crds=True,  # the controller applies them (upgrade.crds), as Flux does
        disable_hooks=bool(spec.disable_hooks),
        take_ownership=not spec.disable_take_ownership,
        force_replace=bool(spec.force),
        disable_openapi_validation=bool(spec.disable_open_api_validation),
        skip_schema_validation=bool(spec.disable_schema_validation),
        server_side_apply=_SSA[spec.server_side_apply],
        reset_values=not spec.preserve_values,
        reuse_values=bool(spec.preserve_values),
        cleanup_on_fail=bool(spec.cleanup_on_fail),
        max_history=hr.spec.effective_max_history(),
        post_render_strategy=hr.spec.post_render_strategy,
    )


def resolve_server_side_apply(options: Options, applied_by: StoredRelease | None) -> Options:
    """Flux resolves `auto` itself, from how the release it starts from was applied (Helm 3 and
    older Helm 4 releases were client-side), because it forces conflicts on server-side apply
    only: Helm refuses forceConflicts with client-side apply (a release `helm install`ed by
    Helm 3 could not be adopted otherwise). Force replace is for client-side apply alone."""
    ssa = options.server_side_apply == "true"
    if options.server_side_apply == "auto":
        ssa = applied_by is not None and applied_by.server_side_applied
    return dataclasses.replace(
        options,
        server_side_apply=str(ssa).lower(),
        force_conflicts=ssa,
        force_replace=options.force_replace and not ssa,
    )


def uninstall_options(hr: HelmRelease) -> UninstallOptions:
    spec = hr.spec.uninstall
    return UninstallOptions(
        timeout_seconds=_seconds(spec.timeout if spec else None, hr.spec.timeout_seconds()),
        wait=wait_strategy(hr, spec.disable_wait if spec else None),
        disable_hooks=bool(spec and spec.disable_hooks),
        keep_history=bool(spec and spec.keep_history),
        deletion_propagation=(spec.deletion_propagation if spec else None) or "background",
    )


@dataclass
class ActionRunner:
    """Runs one action for one HelmRelease; `hr.status` is updated in place."""

    engine: HelmEngine
    storage: ReconcileStorage
    hr: HelmRelease
    target: Target
    chart_path: str
    values: dict[str, Any]
    desired: Desired
    post_render: PostRenderSpec | None = None
    kube: KubeClient | None = None
    """For what the controller writes itself: CRDs, drift correction."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) for the reconciler to send as Kubernetes Events."""
    drift: DriftReport | None = None
    """The last drift detection's diffs, which a correction applies."""
    exprs: list[CompiledExpr] = field(default_factory=list)
    """spec.healthCheckExprs, compiled: with the poller strategy Tide waits on the objects itself."""
    dry_runs: asyncio.Semaphore | None = None
    """The controller's bound on drift detection's dry-runs in flight (drift.CONCURRENCY)."""

    async def __call__(self, action: Action, decision: Decision) -> bool:
        if action in (Action.INSTALL, Action.UPGRADE):
            return await self._release(action)
        if action is Action.TEST:
            return await self._test()
        if action is Action.ROLLBACK:
            return await self._rollback()
        if action is Action.UNINSTALL:
            return await self._uninstall()
        if action is Action.UNLOCK:
            return await self._unlock()
        if action is Action.CORRECT_DRIFT:
            return await self._correct_drift()
        raise NotImplementedError(f"{action} has no runner")

    async def _helm(self, action: Awaitable[Answer]) -> Answer:
        """Run a Helm action: it writes release storage, so what this reconcile listed is stale."""
        try:
            return await action
        finally:
            self.storage.forget()

    # --- status helpers -------------------------------------------------------------------------

    def _mark(self, type_: str, status: str, reason: str, message: str) -> None:
        current = [c.model_dump(by_alias=True, exclude_none=True) for c in self.hr.status.conditions]
        updated = cond.set_condition(current, type_, status, reason, message, self.hr.metadata.generation)
        self.hr.status.conditions = [Condition.model_validate(c) for c in updated]

    def _drop(self, type_: str) -> None:
        self.hr.status.conditions = [c for c in self.hr.status.conditions if c.type != type_]

    def _event(self, warning: bool, reason: str, message: str) -> None:
        self.events.append(("Warning" if warning else "Normal", reason, message))

    def _record(self, release: StoredRelease, action: str, source_digest: str = "") -> None:
        """Put the release in status.history (replacing the snapshot of the same revision)."""
        kept = [
            s
            for s in self.hr.status.history or []
            if (s.name, s.namespace, s.version) != (release.name, release.namespace, release.version)
        ]
        self.hr.status.history = [snapshot(release, action=action, oci_digest=source_digest), *kept]

    def _chart(self) -> str:
        return f"{self.desired.chart_name}@{self.desired.chart_version}"

    def _full_name(self) -> str:
        current = history.latest(self.hr.status.history)
        if current is None:
            return f"{self.target.namespace}/{self.target.name}"
        return f"{current.namespace}/{current.name}.v{current.version}"

    async def _observe_inventory(self, release: StoredRelease) -> None:
        """status.inventory from the release just stored and the chart's CRDs (Flux's storage
        observer); a failure is an Event and leaves the inventory as it was."""
        if self.kube is None:
            return
        try:
            objects = await asyncio.to_thread(release_manifest_objects, release.manifest)
            namespaced: dict[tuple[str, str], bool | str] = {}
            for api_version, kind in unscoped_kinds(objects):
                try:
                    namespaced[(api_version, kind)] = (await self.kube.resource(api_version, kind)).namespaced
                except KubeApiError as err:
                    namespaced[(api_version, kind)] = str(err)
            crd_files = await self.engine.chart_crds(self.target, self.chart_path)
            built = await asyncio.to_thread(
                release_inventory, objects, release.namespace, namespaced, crd_files
            )
        except (InventoryBuildFailed, EngineError) as err:
            name = f"{self.hr.metadata.namespace}/{self.hr.metadata.name}"
            self._event(True, BUILD_FAILED_REASON, f"failed to build inventory for {name}: {err}")
            return
        if built.warnings:
            self._event(True, NAMESPACE_CHECK_SKIPPED_REASON, "; ".join(built.warnings))
        self.hr.status.inventory = ResourceInventory.model_validate(built.inventory.to_status())

    # --- drift -----------------------------------------------------------------------------------

    async def detect_drift(self, release: StoredRelease) -> bool:
        """Diff the release's objects against the cluster (kept for a correction): drifted?
        Flux: diff errors with no drift found mean the state is unknown, an error."""
        assert self.kube is not None
        rules = (self.hr.spec.drift_detection.ignore if self.hr.spec.drift_detection else None) or []
        report = await detect(
            self.kube, release.manifest, release.name, release.namespace, rules, self.dry_runs
        )
        if report.errors and not report.has_changes:
            raise DriftError("unable to determine cluster state: " + "; ".join(report.errors))
        if report.errors:
            log.warning("diff of release against cluster state completed with error: %s", report.errors)
        self.drift = report
        return report.has_changes

    def observed(self, state: ReleaseState) -> None:
        """The Drifted condition (and the DriftDetected Event) for the state the loop found."""
        drifted = drift_condition(state, self.hr.spec.effective_drift_detection_mode())
        if drifted is True and self.drift is not None:
            message = detected_message(self._full_name(), self.drift)
            log.info("detected changes in cluster state (%s)", self.drift.brief())
            self._event(True, "DriftDetected", message)
            self._mark(DRIFTED, "True", "DriftDetected", message)
        elif drifted is False:
            self._mark(DRIFTED, "False", "NoDriftDetected", "No drift detected against the cluster state")

    async def _correct_drift(self) -> bool:
        """Re-create and patch the drifted objects (never a Helm upgrade); reported by Event only,
        as Flux: a failed correction does not fail the reconcile."""
        if self.drift is None or not self.drift.has_changes or self.kube is None:
            return False
        changes, errors = await correct(self.kube, self.drift)
        report = correction_report(self._full_name(), changes, errors)
        if report is not None:
            type_, reason, message = report
            self._event(type_ == "Warning", reason, message)
        return False

    async def _apply_crds(self, policy: str) -> None:
        """install.crds / upgrade.crds: the chart's CRDs, written by the controller, Established."""
        if policy == "Skip" or self.kube is None:
            return
        files = await self.engine.chart_crds(self.target, self.chart_path)
        crds, others = chart_crds(files)
        if others:
            log.warning(
                "ignoring non-CRD resources found in the chart's crds/ directory "
                "(it is reserved for CustomResourceDefinitions): %s",
                ", ".join(others),
            )
        origin = [with_origin(c, self.hr.metadata.name or "", self.hr.metadata.namespace or "") for c in crds]
        await apply_crds(self.kube, policy, origin)

    # --- healthCheckExprs: the wait after Helm's (health_wait.py) ---------------------------------

    def _waiting(self, options: WaitOptions) -> tuple[WaitOptions, bool]:
        """The options Helm gets, and whether Tide waits on the objects after it."""
        waits = waits_itself(options.wait, self.exprs)
        return dataclasses.replace(options, wait=helm_strategy(options.wait, self.exprs)), waits

    async def _statuses(self) -> dict[int, str]:
        """The releases' statuses before an action (what a failed wait leaves them at)."""
        if not self.exprs:
            return {}
        return {r.version: r.status for r in await self.storage.history(self.target.name)}

    async def _wait_healthy(
        self,
        action: str,
        release: StoredRelease,
        before: dict[int, str],
        options: InstallOptions | UpgradeOptions | RollbackOptions,
    ) -> tuple[StoredRelease, str | None]:
        """Wait on the release's objects as Helm's wait would have: the release as stored
        afterwards, and the action's error when the wait failed."""
        assert self.kube is not None
        held = await hold(self.storage, action, release, before)
        try:
            await wait_release(self.kube, release, self.exprs, options.timeout_seconds, options.wait_for_jobs)
        except asyncio.CancelledError:
            # Helm records a release whose context was cancelled mid-wait as failed.
            await asyncio.shield(settle(self.storage, held, "context canceled"))
            raise
        except ReleaseWaitFailed as err:
            failure = str(err)
        except Exception as err:  # any other failure ends the wait failed, never left pending
            failure = f"{type(err).__name__}: {err}"
        else:
            return await settle(self.storage, held, None), None
        failed = await settle(self.storage, held, failure)
        return failed, action_error(action, release.name, failure)

    # --- the actions ----------------------------------------------------------------------------

    async def _release(self, action: Action) -> bool:
        verb = str(action)
        status = self.hr.status
        status.last_attempted_release_action = "install" if action is Action.INSTALL else "upgrade"
        if action is Action.INSTALL:
            status.history = None
            self._drop(TEST_SUCCESS)
            self._drop(REMEDIATED)
        statuses = await self._statuses()
        before = await self.storage.latest(self.target.name)
        before_version = before.version if before else 0
        error: EngineError | CRDError | None = None
        waiting: InstallOptions | UpgradeOptions | None = None  # set when Tide waits after Helm
        try:
            if action is Action.INSTALL:
                await self._apply_crds(self.hr.spec.effective_install().crds_policy())
                install, waits = self._waiting(install_options(self.hr))
                waiting = install if waits else None
                await self._helm(
                    self.engine.install(self.target, self.chart_path, self.values, install, self.post_render)
                )
            else:
                await self._apply_crds(self.hr.spec.effective_upgrade().crds_policy())
                upgrade, waits = self._waiting(resolve_server_side_apply(upgrade_options(self.hr), before))
                waiting = upgrade if waits else None
                await self._helm(
                    self.engine.upgrade(self.target, self.chart_path, self.values, upgrade, self.post_render)
                )
        except (EngineError, CRDError) as err:
            error = err
        recorded = await self.storage.stored_after(self.target.name, before_version)
        if waiting is not None and error is None and recorded is not None and recorded.status == "deployed":
            recorded, failure = await self._wait_healthy(verb, recorded, statuses, waiting)
            error = ReleaseFailed(failure) if failure is not None else None
        if recorded is not None:
            self._record(recorded, verb, self.desired.source_digest)
            await self._observe_inventory(recorded)
        title = "Install" if action is Action.INSTALL else "Upgrade"
        name = recorded.full_name() if recorded else f"{self.target.namespace}/{self.target.name}"
        if error is None and recorded is not None and recorded.status == "deployed":
            message = f"Helm {verb} succeeded for release {name} with chart {self._chart()}"
            self._mark(RELEASED, "True", f"{title}Succeeded", message)
            self._event(False, f"{title}Succeeded", message)
            status.observed_post_renderers_digest = self.desired.post_renderers_digest or None
            status.observed_common_metadata_digest = self.desired.common_metadata_digest or None
            return False
        message = f"Helm {verb} failed for release {name} with chart {self._chart()}: {error or 'failed'}"
        self._mark(RELEASED, "False", f"{title}Failed", message)
        self._event(True, f"{title}Failed", message)
        if recorded is None:
            return True
        status.failures = (status.failures or 0) + 1
        if action is Action.INSTALL:
            status.install_failures = (status.install_failures or 0) + 1
        else:
            status.upgrade_failures = (status.upgrade_failures or 0) + 1
        return False

    async def _test(self) -> bool:
        spec = self.hr.spec.test
        filters = (spec.filters or []) if spec else []
        timeout = _seconds(spec.timeout if spec else None, self.hr.spec.timeout_seconds())
        options = TestOptions(
            timeout_seconds=timeout,
            include_names=[f.name for f in filters if not f.exclude],
            exclude_names=[f.name for f in filters if f.exclude],
        )
        error: EngineError | None = None
        try:
            await self._helm(self.engine.test(self.target, options))
        except EngineError as err:
            error = err
        latest = await self.storage.latest(self.target.name)
        current = history.latest(self.hr.status.history)
        if latest is not None and current is not None and latest.version == current.version:
            current.test_hooks = latest.test_hooks(filters)
        name = latest.full_name() if latest else self.target.name
        if error is None:
            hooks = len(current.test_hooks or {}) if current else 0
            what = (
                f"{hooks} test hook{'s' if hooks != 1 else ''} completed successfully"
                if hooks
                else "no test hooks"
            )
            message = f"Helm test succeeded for release {name} with chart {self._chart()}: {what}"
            self._mark(TEST_SUCCESS, "True", "TestSucceeded", message)
            self._event(False, "TestSucceeded", message)
            return False
        message = f"Helm test failed for release {name} with chart {self._chart()}: {error}"
        self._mark(TEST_SUCCESS, "False", "TestFailed", message)
        self._event(True, "TestFailed", message)
        self.hr.status.failures = (self.hr.status.failures or 0) + 1
        if not history.has_been_tested(current):
            return True
        if self.hr.active_remediation() is not None and not ignores_test_failures(self.hr):
            if self.hr.status.last_attempted_release_action == "install":
                self.hr.status.install_failures = (self.hr.status.install_failures or 0) + 1
            else:
                self.hr.status.upgrade_failures = (self.hr.status.upgrade_failures or 0) + 1
        return False

    async def _rollback(self) -> bool:
        previous = history.previous(self.hr.status.history, ignores_test_failures(self.hr))
        if previous is None:
            return True
        spec = self.hr.spec.rollback
        options = RollbackOptions(
            version=previous.version,
            timeout_seconds=_seconds(spec.timeout if spec else None, self.hr.spec.timeout_seconds()),
            wait=wait_strategy(self.hr, spec.disable_wait if spec else None),
            wait_for_jobs=not (spec and spec.disable_wait_for_jobs),
            disable_hooks=bool(spec and spec.disable_hooks),
            server_side_apply=_SSA[spec.server_side_apply if spec else None],
            force_replace=bool(spec and spec.force),
            cleanup_on_fail=bool(spec and spec.cleanup_on_fail),
            max_history=self.hr.spec.effective_max_history(),
        )
        statuses = await self._statuses()
        before = await self.storage.latest(self.target.name)
        options, waits = self._waiting(
            resolve_server_side_apply(options, await self.storage.get(self.target.name, previous.version))
        )
        try:
            await self._helm(self.engine.rollback(self.target, options))
            recorded = await self.storage.stored_after(self.target.name, before.version if before else 0)
            if waits and recorded is not None and recorded.status == "deployed":
                recorded, failure = await self._wait_healthy("rollback", recorded, statuses, options)
                if failure is not None:
                    raise ReleaseFailed(failure)
        except EngineError as err:
            message = f"Helm rollback to previous release {previous.name}.v{previous.version} failed: {err}"
            self._mark(REMEDIATED, "False", "RollbackFailed", message)
            self._event(True, "RollbackFailed", message)
            return True
        if recorded is not None:
            self._record(recorded, "rollback")
            await self._observe_inventory(recorded)
        message = (
            f"Helm rollback to previous release {previous.namespace}/{previous.name}.v{previous.version} "
            f"with chart {previous.chart_name}@{previous.chart_version} succeeded"
        )
        self._mark(REMEDIATED, "True", "RollbackSucceeded", message)
        self._event(False, "RollbackSucceeded", message)
        return False

    async def _uninstall(self) -> bool:
        try:
            await self._helm(self.engine.uninstall(self.target, uninstall_options(self.hr)))
        except EngineError as err:
            message = f"Helm uninstall failed for release {self.target.namespace}/{self.target.name}: {err}"
            self._mark(REMEDIATED, "False", "UninstallFailed", message)
            self._event(True, "UninstallFailed", message)
            return True
        current = history.latest(self.hr.status.history)
        if current is not None:
            current.status = "uninstalled"
        message = f"Helm uninstall succeeded for release {self.target.namespace}/{self.target.name}"
        self._mark(REMEDIATED, "True", "UninstallSucceeded", message)
        self._event(False, "UninstallSucceeded", message)
        return False

    async def _unlock(self) -> bool:
        latest = await self.storage.latest(self.target.name)
        if latest is None or not latest.is_pending:
            return False
        stale = latest.status
        unlocked = await self.storage.unlock(latest)
        self._record(unlocked, "unlock")
        release = unlocked.full_name()
        message = f"Unlocked Helm release {release} with chart {self._chart()} from stale '{stale}' state"
        self._mark(RELEASED, "False", "PendingRelease", message)
        self._event(True, "PendingRelease", message)
        return False


async def rollback_target(storage: ReleaseStorage, previous: ReleaseSnapshot) -> RollbackTarget:
    """Flux's VerifySnapshot: the release to roll back to is still in storage as observed."""
    release = await storage.get(previous.name, previous.version)
    if release is None or not digest_matches(previous, release):
        return RollbackTarget.UNVERIFIABLE
    return RollbackTarget.VERIFIED
