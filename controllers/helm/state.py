"""The release's state and the next action, as helm-controller decides them (pure, table-tested).

`determine_state` compares the latest release in Helm's storage with the HelmRelease (its spec,
its status.history and the chart and values this reconcile wants): Absent, Unmanaged, OutOfSync,
Drifted, Locked, Untested, Failed or InSync. `next_action` picks what to do about that state:
install, upgrade, test, unlock, rollback or uninstall remediation, drift correction, or nothing;
with the history edit the decision implies and, when nothing may be done, why (Stalled reasons).
The atomic loop (`loop_step_allowed`, `after_action`) runs each action type at most once per
reconcile and stops after a remediation.

Drift is the one input that needs the cluster (a server-side dry-run): the caller runs it only
for a release that is otherwise InSync with drift detection on, and passes the result in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from tide.controllers.helm import history
from tide.controllers.helm.storage import StoredRelease, digest_matches
from tide.shared.api.helm import HelmRelease, InstallRemediation, ReleaseSnapshot, UpgradeRemediation


class ReleaseState(StrEnum):
    ABSENT = "Absent"
    UNMANAGED = "Unmanaged"
    OUT_OF_SYNC = "OutOfSync"
    DRIFTED = "Drifted"
    LOCKED = "Locked"
    UNTESTED = "Untested"
    FAILED = "Failed"
    IN_SYNC = "InSync"


class UnknownReleaseStatus(Exception):
    """Storage holds a release in a status no action starts from (e.g. superseded as latest)."""


@dataclass(frozen=True)
class Desired:
    """What this reconcile would release: the loaded chart and the composed values."""

    chart_name: str
    chart_version: str
    config_digest: str
    post_renderers_digest: str = ""
    common_metadata_digest: str = ""
    source_digest: str = ""
    """The OCIRepository or ExternalArtifact digest in the chart version (Flux's ociDigest)."""


@dataclass(frozen=True)
class StateReport:
    state: ReleaseState
    reason: str = ""


def determine_state(
    release: StoredRelease | None, hr: HelmRelease, desired: Desired, drifted: bool = False
) -> StateReport:
    """Flux's DetermineReleaseState; `drifted` is the caller's diff of an otherwise in-sync release."""
    if release is None:
        return StateReport(ReleaseState.ABSENT, "no release in storage for object")
    if release.is_pending:
        return StateReport(ReleaseState.LOCKED, f"release with status '{release.status}'")
    current = history.latest(hr.status.history)
    if current is None:
        if release.status == "uninstalled":
            return StateReport(ReleaseState.ABSENT, "found uninstalled release in storage")
        return StateReport(ReleaseState.UNMANAGED, "found existing release in storage")
    if not _observed(current, release):
        return StateReport(ReleaseState.UNMANAGED, "release not observed to be made for object")

    if release.status == "failed":
        return StateReport(ReleaseState.FAILED)
    if release.status == "uninstalled":
        return StateReport(ReleaseState.ABSENT, "found uninstalled release in storage")
    if release.status != "deployed":
        raise UnknownReleaseStatus(f"unable to determine state for release with status '{release.status}'")

    if release.chart_name != desired.chart_name or release.chart_version != desired.chart_version:
        return StateReport(ReleaseState.OUT_OF_SYNC, "release chart changed")
    if current.config_digest != desired.config_digest:
        return StateReport(ReleaseState.OUT_OF_SYNC, "release config values changed")
    # Post-renderers and common metadata count only for a new generation: the observed digests
    # are written after each release, so this cannot loop within one reconcile.
    if hr.status.observed_generation != hr.metadata.generation:
        if desired.post_renderers_digest != (hr.status.observed_post_renderers_digest or ""):
            return StateReport(ReleaseState.OUT_OF_SYNC, "postrenderers digest has changed")
        if desired.common_metadata_digest != (hr.status.observed_common_metadata_digest or ""):
            return StateReport(ReleaseState.OUT_OF_SYNC, "common metadata digest has changed")

    test = hr.spec.test
    if test and test.enable:
        if not history.has_been_tested(current):
            return StateReport(ReleaseState.UNTESTED)
        if (
            hr.active_remediation() is not None
            and not ignores_test_failures(hr)
            and history.has_test_in_phase(current, "Failed")
        ):
            return StateReport(ReleaseState.FAILED, "release has test in failed phase")

    if drifted:
        return StateReport(ReleaseState.DRIFTED)
    return StateReport(ReleaseState.IN_SYNC)


def _observed(snapshot: ReleaseSnapshot, release: StoredRelease) -> bool:
    if snapshot.api_version is None:
        # Legacy snapshots carry no usable digest: ownership is the release's identity.
        return (snapshot.name, snapshot.namespace, snapshot.version) == (
            release.name,
            release.namespace,
            release.version,
        )
    return digest_matches(snapshot, release)


def drift_condition(state: ReleaseState, mode: str) -> bool | None:
    """The Drifted condition a state sets (Flux): True when drifted, False when in sync with
    detection on; None leaves it as it is (other states, or detection disabled)."""
    if state is ReleaseState.DRIFTED:
        return True
    if state is ReleaseState.IN_SYNC and mode != "disabled":
        return False
    return None


# --- the next action ------------------------------------------------------------------------------


class Action(StrEnum):
    INSTALL = "install"
    UPGRADE = "upgrade"
    TEST = "test"
    UNLOCK = "unlock"
    ROLLBACK = "rollback"
    UNINSTALL = "uninstall"
    CORRECT_DRIFT = "correct-drift"


class ActionType(StrEnum):
    """What the loop counts: an action of a type already run this reconcile does not run again."""

    RELEASE = "release"
    REMEDIATE = "remediate"
    TEST = "test"
    UNLOCK = "unlock"
    DRIFT_CORRECTION = "drift correction"


ACTION_TYPE = {
    Action.INSTALL: ActionType.RELEASE,
    Action.UPGRADE: ActionType.RELEASE,
    Action.TEST: ActionType.TEST,
    Action.UNLOCK: ActionType.UNLOCK,
    Action.ROLLBACK: ActionType.REMEDIATE,
    Action.UNINSTALL: ActionType.REMEDIATE,
    Action.CORRECT_DRIFT: ActionType.DRIFT_CORRECTION,
}


class HistoryEdit(StrEnum):
    KEEP = "keep"
    CLEAR = "clear"
    TRUNCATE = "truncate"
    """Cut after the previous good release (tests counted unless ignored)."""
    TRUNCATE_IGNORING_PREVIOUS = "truncate-ignoring-previous"


class Stall(StrEnum):
    RETRIES_EXCEEDED = "RetriesExceeded"
    MISSING_ROLLBACK_TARGET = "MissingRollbackTarget"


class RollbackTarget(StrEnum):
    """What storage says of the snapshot a rollback would return to (Flux's VerifySnapshot)."""

    VERIFIED = "verified"
    MISSING = "missing"
    """No previous good snapshot in status.history: nothing to roll back to."""
    UNVERIFIABLE = "unverifiable"
    """Gone from storage or changed since observed: upgrade instead."""


@dataclass(frozen=True)
class Decision:
    action: Action | None
    history_edit: HistoryEdit = HistoryEdit.KEEP
    ignore_test_failures: bool = False
    """For a TRUNCATE: whether a failed test still counts the release as good."""
    stall: Stall | None = None
    message: str = ""


def active_retry(hr: HelmRelease, default_to_retry_on_failure: bool = False) -> bool:
    """RetryOnFailure governs the last attempted action (Flux's GetActiveRetry)."""
    action = hr.status.last_attempted_release_action
    if action not in ("install", "upgrade"):
        return False
    strategy = (hr.spec.install or None) if action == "install" else (hr.spec.upgrade or None)
    chosen = strategy.strategy if strategy else None
    if chosen is None:
        return default_to_retry_on_failure
    return chosen.name == "RetryOnFailure"


def failure_count(hr: HelmRelease) -> int:
    if hr.status.last_attempted_release_action == "install":
        return hr.status.install_failures or 0
    if hr.status.last_attempted_release_action == "upgrade":
        return hr.status.upgrade_failures or 0
    return 0


def ignores_test_failures(hr: HelmRelease) -> bool:
    """Whether failed tests leave a release good: the active remediation's ignoreTestFailures,
    else test.ignoreFailures (Flux's MustIgnoreTestFailures)."""
    default = bool(hr.spec.test and hr.spec.test.ignore_failures)
    remediation = hr.active_remediation()
    return remediation.must_ignore_test_failures(default) if remediation else default


def next_action(
    report: StateReport,
    hr: HelmRelease,
    *,
    force_requested: bool = False,
    default_to_retry_on_failure: bool = False,
    rollback_target: Callable[[ReleaseSnapshot | None], RollbackTarget] = lambda _: RollbackTarget.VERIFIED,
) -> Decision:
    """Flux's actionForState. `rollback_target` checks storage for the snapshot a rollback needs."""
    state = report.state
    retry = active_retry(hr, default_to_retry_on_failure)
    remediation = hr.active_remediation()
    ignore_tests = ignores_test_failures(hr)

    if state is ReleaseState.IN_SYNC:
        edit = HistoryEdit.TRUNCATE_IGNORING_PREVIOUS if retry else HistoryEdit.TRUNCATE
        return Decision(Action.UPGRADE if force_requested else None, edit, ignore_tests)
    if state is ReleaseState.LOCKED:
        return Decision(Action.UNLOCK)
    if state is ReleaseState.ABSENT:
        exhausted = hr.spec.install_remediation().retries_exhausted(hr.status.install_failures or 0)
        return _unless_exhausted(Action.INSTALL, exhausted and not force_requested)
    if state is ReleaseState.UNMANAGED:
        return Decision(Action.UPGRADE, HistoryEdit.CLEAR)
    if state is ReleaseState.OUT_OF_SYNC:
        exhausted = hr.spec.upgrade_remediation().retries_exhausted(hr.status.upgrade_failures or 0)
        return _unless_exhausted(Action.UPGRADE, exhausted and not force_requested)
    if state is ReleaseState.DRIFTED:
        correct = hr.spec.effective_drift_detection_mode() == "enabled"
        return Decision(Action.CORRECT_DRIFT if correct else None)
    if state is ReleaseState.UNTESTED:
        return Decision(Action.TEST)
    if state is ReleaseState.FAILED:
        return _remediate(hr, remediation, retry, force_requested, ignore_tests, rollback_target)
    raise UnknownReleaseStatus(f"unknown release status: {state}")


def _unless_exhausted(action: Action, exhausted: bool) -> Decision:
    if exhausted:
        return Decision(None, stall=Stall.RETRIES_EXCEEDED, message=f"cannot {action} release")
    return Decision(action)


def _remediate(
    hr: HelmRelease,
    remediation: InstallRemediation | UpgradeRemediation | None,
    retry: bool,
    force_requested: bool,
    ignore_tests: bool,
    rollback_target: Callable[[ReleaseSnapshot | None], RollbackTarget],
) -> Decision:
    if retry:
        return Decision(Action.UPGRADE, HistoryEdit.TRUNCATE_IGNORING_PREVIOUS)
    if remediation is None:
        return Decision(Action.UPGRADE)
    failures = failure_count(hr)
    if failures <= 0 or force_requested:
        return Decision(Action.UPGRADE)  # conditions changed since the failure, or forced
    if remediation.retries_exhausted(failures) and not remediation.must_remediate_last_failure():
        return Decision(None, stall=Stall.RETRIES_EXCEEDED, message="cannot remediate failed release")
    if remediation.effective_strategy() == "uninstall":
        return Decision(Action.UNINSTALL, HistoryEdit.TRUNCATE, ignore_tests)
    truncated = history.truncate(hr.status.history, ignore_tests)
    target = history.previous(truncated, ignore_tests)
    checked = rollback_target(target) if target is not None else RollbackTarget.MISSING
    if checked is RollbackTarget.MISSING:
        return Decision(
            None,
            HistoryEdit.TRUNCATE,
            ignore_tests,
            stall=Stall.MISSING_ROLLBACK_TARGET,
            message="missing target release for rollback: cannot remediate failed release",
        )
    if checked is RollbackTarget.UNVERIFIABLE:
        return Decision(Action.UPGRADE, HistoryEdit.TRUNCATE, ignore_tests)
    return Decision(Action.ROLLBACK, HistoryEdit.TRUNCATE, ignore_tests)


# --- the atomic loop's stop rules ------------------------------------------------------------------


def loop_step_allowed(action: Action, done: Sequence[ActionType]) -> bool:
    """Before running: never the same type of action twice in one reconcile."""
    return ACTION_TYPE[action] not in done


class Outcome(StrEnum):
    CONTINUE = "continue"
    RETRY_AFTER_INTERVAL = "retry-after-interval"
    """RetryOnFailure: requeue after its retryInterval, Reconciling ProgressingWithRetry."""
    REQUEUE = "requeue"
    """Remediation left retries: requeue now, Reconciling ProgressingWithRetry."""
    STALLED = "stalled"
    """Retries exhausted: Stalled RetriesExceeded."""
    ERROR = "error"
    """The action failed without RetryOnFailure: the reconcile fails and backs off."""
    DONE = "done"
    """Nothing more this reconcile."""


def after_action(
    action: Action, hr: HelmRelease, failed: bool, default_to_retry_on_failure: bool = False
) -> Outcome:
    """After running an action (status already updated by it): go on, retry, requeue or stall.

    `failed`: the action errored before Helm recorded a release (a failed release that Helm did
    record is not an error here: the next state, Failed, remediates it)."""
    retry = active_retry(hr, default_to_retry_on_failure)
    if failed:
        return Outcome.RETRY_AFTER_INTERVAL if retry else Outcome.ERROR
    if ACTION_TYPE[action] is not ActionType.REMEDIATE:
        return Outcome.CONTINUE
    if retry:
        return Outcome.RETRY_AFTER_INTERVAL
    remediation = hr.active_remediation()
    uninstall_after_upgrade = (
        hr.status.last_attempted_release_action == "upgrade"
        and hr.spec.upgrade_remediation().effective_strategy() == "uninstall"
    )
    if remediation is None or not remediation.retries_exhausted(failure_count(hr)) or uninstall_after_upgrade:
        return Outcome.REQUEUE
    return Outcome.STALLED


def when_repeated(action: Action, hr: HelmRelease, default_to_retry_on_failure: bool = False) -> Outcome:
    """The loop reached an action type it already ran: stop, and say how to come back.

    A drift correction that did not stick (it failed, or something reverts it) waits for the next
    interval: Flux requeues with its rate limiter, a fixed quick requeue here would fight in a loop."""
    if ACTION_TYPE[action] is ActionType.DRIFT_CORRECTION:
        return Outcome.DONE
    if active_retry(hr, default_to_retry_on_failure):
        return Outcome.RETRY_AFTER_INTERVAL
    remediation = hr.active_remediation()
    if remediation is None or not remediation.retries_exhausted(failure_count(hr)):
        return Outcome.REQUEUE
    return Outcome.DONE
