"""The next action for a release state, and the atomic loop's stop rules (helm-controller's)."""

from __future__ import annotations

from typing import Any

import pytest
from helm_fixtures import stored

from tide.controllers.helm.state import (
    Action,
    ActionType,
    Decision,
    HistoryEdit,
    Outcome,
    ReleaseState,
    RollbackTarget,
    Stall,
    StateReport,
    after_action,
    loop_step_allowed,
    next_action,
    when_repeated,
)
from tide.controllers.helm.storage import snapshot
from tide.shared.api.helm import HelmRelease, ReleaseSnapshot


def hr(spec: dict[str, Any] | None = None, **status: Any) -> HelmRelease:
    obj = HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "apps", "generation": 1},
            "spec": {"interval": "5m", "chartRef": {"kind": "OCIRepository", "name": "c"}, **(spec or {})},
            "status": status,
        }
    )
    return obj


def snaps(*statuses: str) -> list[dict[str, Any]]:
    """History, newest first, as status dicts."""
    n = len(statuses)
    return [
        snapshot(stored(version=n - i, status=s)).model_dump(by_alias=True, exclude_none=True)
        for i, s in enumerate(statuses)
    ]


RETRY = {"name": "RetryOnFailure", "retryInterval": "1m"}
UPGRADE_FAILED_ONCE = {"lastAttemptedReleaseAction": "upgrade", "upgradeFailures": 1}
INSTALL_FAILED_ONCE = {"lastAttemptedReleaseAction": "install", "installFailures": 1}


def s(state: ReleaseState) -> StateReport:
    return StateReport(state)


CASES: list[tuple[str, ReleaseState, HelmRelease, dict[str, Any], Decision]] = [
    ("absent installs", ReleaseState.ABSENT, hr(), {}, Decision(Action.INSTALL)),
    (
        "absent after exhausted install retries stalls",
        ReleaseState.ABSENT,
        hr(**INSTALL_FAILED_ONCE),
        {},
        Decision(None, stall=Stall.RETRIES_EXCEEDED, message="cannot install release"),
    ),
    (
        "absent with retries left installs",
        ReleaseState.ABSENT,
        hr({"install": {"remediation": {"retries": 2}}}, **INSTALL_FAILED_ONCE),
        {},
        Decision(Action.INSTALL),
    ),
    (
        "absent, infinite retries",
        ReleaseState.ABSENT,
        hr(
            {"install": {"remediation": {"retries": -1}}},
            lastAttemptedReleaseAction="install",
            installFailures=99,
        ),
        {},
        Decision(Action.INSTALL),
    ),
    (
        "absent, out of retries but forced",
        ReleaseState.ABSENT,
        hr(**INSTALL_FAILED_ONCE),
        {"force_requested": True},
        Decision(Action.INSTALL),
    ),
    ("locked unlocks", ReleaseState.LOCKED, hr(), {}, Decision(Action.UNLOCK)),
    (
        "unmanaged upgrades afresh",
        ReleaseState.UNMANAGED,
        hr(),
        {},
        Decision(Action.UPGRADE, HistoryEdit.CLEAR),
    ),
    ("out of sync upgrades", ReleaseState.OUT_OF_SYNC, hr(), {}, Decision(Action.UPGRADE)),
    (
        "out of sync, upgrade retries exhausted",
        ReleaseState.OUT_OF_SYNC,
        hr(**UPGRADE_FAILED_ONCE),
        {},
        Decision(None, stall=Stall.RETRIES_EXCEEDED, message="cannot upgrade release"),
    ),
    (
        "out of sync, exhausted but forced",
        ReleaseState.OUT_OF_SYNC,
        hr(**UPGRADE_FAILED_ONCE),
        {"force_requested": True},
        Decision(Action.UPGRADE),
    ),
    ("in sync: nothing", ReleaseState.IN_SYNC, hr(), {}, Decision(None, HistoryEdit.TRUNCATE)),
    (
        "in sync, forced",
        ReleaseState.IN_SYNC,
        hr(),
        {"force_requested": True},
        Decision(Action.UPGRADE, HistoryEdit.TRUNCATE),
    ),
    (
        "in sync under RetryOnFailure keeps no previous",
        ReleaseState.IN_SYNC,
        hr({"upgrade": {"strategy": RETRY}}, lastAttemptedReleaseAction="upgrade"),
        {},
        Decision(None, HistoryEdit.TRUNCATE_IGNORING_PREVIOUS),
    ),
    (
        "in sync, tests ignored for truncation",
        ReleaseState.IN_SYNC,
        hr({"test": {"enable": True, "ignoreFailures": True}}),
        {},
        Decision(None, HistoryEdit.TRUNCATE, ignore_test_failures=True),
    ),
    (
        "drifted, correction enabled",
        ReleaseState.DRIFTED,
        hr({"driftDetection": {"mode": "enabled"}}),
        {},
        Decision(Action.CORRECT_DRIFT),
    ),
    (
        "drifted, warn only",
        ReleaseState.DRIFTED,
        hr({"driftDetection": {"mode": "warn"}}),
        {},
        Decision(None),
    ),
    ("untested tests", ReleaseState.UNTESTED, hr(), {}, Decision(Action.TEST)),
    (
        "failed under RetryOnFailure upgrades again",
        ReleaseState.FAILED,
        hr({"upgrade": {"strategy": RETRY}}, **UPGRADE_FAILED_ONCE),
        {},
        Decision(Action.UPGRADE, HistoryEdit.TRUNCATE_IGNORING_PREVIOUS),
    ),
    (
        "failed, RetryOnFailure by controller default",
        ReleaseState.FAILED,
        hr(**UPGRADE_FAILED_ONCE),
        {"default_to_retry_on_failure": True},
        Decision(Action.UPGRADE, HistoryEdit.TRUNCATE_IGNORING_PREVIOUS),
    ),
    ("failed, nothing attempted by us", ReleaseState.FAILED, hr(), {}, Decision(Action.UPGRADE)),
    (
        "failed, failure counters reset (new generation or values)",
        ReleaseState.FAILED,
        hr(lastAttemptedReleaseAction="upgrade", upgradeFailures=0),
        {},
        Decision(Action.UPGRADE),
    ),
    (
        "failed, forced",
        ReleaseState.FAILED,
        hr(**UPGRADE_FAILED_ONCE),
        {"force_requested": True},
        Decision(Action.UPGRADE),
    ),
    (
        "failed upgrade, no retries, remediateLastFailure unset: stall",
        ReleaseState.FAILED,
        hr(**UPGRADE_FAILED_ONCE),
        {},
        Decision(None, stall=Stall.RETRIES_EXCEEDED, message="cannot remediate failed release"),
    ),
    (
        "failed upgrade, retries left: roll back",
        ReleaseState.FAILED,
        hr(
            {"upgrade": {"remediation": {"retries": 2}}},
            history=snaps("failed", "deployed"),
            **UPGRADE_FAILED_ONCE,
        ),
        {},
        Decision(Action.ROLLBACK, HistoryEdit.TRUNCATE),
    ),
    (
        "failed upgrade, last failure remediated by default when retries > 0",
        ReleaseState.FAILED,
        hr(
            {"upgrade": {"remediation": {"retries": 1}}},
            history=snaps("failed", "deployed"),
            lastAttemptedReleaseAction="upgrade",
            upgradeFailures=2,
        ),
        {},
        Decision(Action.ROLLBACK, HistoryEdit.TRUNCATE),
    ),
    (
        "failed upgrade, remediateLastFailure false when exhausted",
        ReleaseState.FAILED,
        hr(
            {"upgrade": {"remediation": {"retries": 1, "remediateLastFailure": False}}},
            history=snaps("failed", "deployed"),
            lastAttemptedReleaseAction="upgrade",
            upgradeFailures=2,
        ),
        {},
        Decision(None, stall=Stall.RETRIES_EXCEEDED, message="cannot remediate failed release"),
    ),
    (
        "failed upgrade, strategy uninstall",
        ReleaseState.FAILED,
        hr({"upgrade": {"remediation": {"retries": 1, "strategy": "uninstall"}}}, **UPGRADE_FAILED_ONCE),
        {},
        Decision(Action.UNINSTALL, HistoryEdit.TRUNCATE),
    ),
    (
        "failed install, remediateLastFailure: uninstall",
        ReleaseState.FAILED,
        hr({"install": {"remediation": {"remediateLastFailure": True}}}, **INSTALL_FAILED_ONCE),
        {},
        Decision(Action.UNINSTALL, HistoryEdit.TRUNCATE),
    ),
    (
        "failed upgrade, nothing good to roll back to",
        ReleaseState.FAILED,
        hr({"upgrade": {"remediation": {"retries": 2}}}, history=snaps("failed"), **UPGRADE_FAILED_ONCE),
        {},
        Decision(
            None,
            HistoryEdit.TRUNCATE,
            stall=Stall.MISSING_ROLLBACK_TARGET,
            message="missing target release for rollback: cannot remediate failed release",
        ),
    ),
    (
        "failed upgrade, rollback target gone from storage: upgrade instead",
        ReleaseState.FAILED,
        hr(
            {"upgrade": {"remediation": {"retries": 2}}},
            history=snaps("failed", "deployed"),
            **UPGRADE_FAILED_ONCE,
        ),
        {"rollback_target": lambda _: RollbackTarget.UNVERIFIABLE},
        Decision(Action.UPGRADE, HistoryEdit.TRUNCATE),
    ),
]


@pytest.mark.parametrize(
    ("state", "obj", "kwargs", "decision"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_next_action(state, obj, kwargs, decision):
    assert next_action(s(state), obj, **kwargs) == decision


def test_rollback_target_is_the_previous_good_snapshot():
    seen: list[ReleaseSnapshot | None] = []

    def check(target: ReleaseSnapshot | None) -> RollbackTarget:
        seen.append(target)
        return RollbackTarget.VERIFIED

    obj = hr(
        {"upgrade": {"remediation": {"retries": 3}}},
        history=snaps("failed", "failed", "superseded", "superseded"),
        **UPGRADE_FAILED_ONCE,
    )
    assert next_action(s(ReleaseState.FAILED), obj, rollback_target=check).action is Action.ROLLBACK
    assert [t.version for t in seen if t] == [2]


@pytest.mark.parametrize(
    ("action", "done", "allowed"),
    [
        (Action.INSTALL, [], True),
        (Action.TEST, [ActionType.RELEASE], True),
        (Action.UPGRADE, [ActionType.RELEASE], False),  # install then upgrade: not in one reconcile
        (Action.ROLLBACK, [ActionType.RELEASE, ActionType.TEST], True),
        (Action.UNINSTALL, [ActionType.REMEDIATE], False),
        (Action.UNLOCK, [ActionType.UNLOCK], False),
        (Action.INSTALL, [ActionType.UNLOCK], True),
    ],
)
def test_never_the_same_type_of_action_twice(action, done, allowed):
    assert loop_step_allowed(action, done) is allowed


@pytest.mark.parametrize(
    ("action", "obj", "failed", "outcome"),
    [
        (Action.INSTALL, hr(lastAttemptedReleaseAction="install"), False, Outcome.CONTINUE),
        (Action.UPGRADE, hr(**UPGRADE_FAILED_ONCE), True, Outcome.ERROR),
        (
            Action.UPGRADE,
            hr({"upgrade": {"strategy": RETRY}}, **UPGRADE_FAILED_ONCE),
            True,
            Outcome.RETRY_AFTER_INTERVAL,
        ),
        (
            Action.ROLLBACK,
            hr({"upgrade": {"remediation": {"retries": 2}}}, **UPGRADE_FAILED_ONCE),
            False,
            Outcome.REQUEUE,
        ),
        (
            Action.ROLLBACK,
            hr(
                {"upgrade": {"remediation": {"retries": 1}}},
                lastAttemptedReleaseAction="upgrade",
                upgradeFailures=2,
            ),
            False,
            Outcome.STALLED,
        ),
        (
            Action.UNINSTALL,
            hr(
                {"upgrade": {"remediation": {"retries": 1, "strategy": "uninstall"}}},
                lastAttemptedReleaseAction="upgrade",
                upgradeFailures=2,
            ),
            False,
            Outcome.REQUEUE,  # the next reconcile installs afresh
        ),
        (
            Action.UNINSTALL,
            hr(
                {"install": {"remediation": {"retries": 1}}},
                lastAttemptedReleaseAction="install",
                installFailures=2,
            ),
            False,
            Outcome.STALLED,
        ),
    ],
)
def test_stop_after_remediation(action, obj, failed, outcome):
    assert after_action(action, obj, failed) is outcome


@pytest.mark.parametrize(
    ("obj", "outcome"),
    [
        (
            hr({"install": {"strategy": RETRY}}, lastAttemptedReleaseAction="install"),
            Outcome.RETRY_AFTER_INTERVAL,
        ),
        (hr(lastAttemptedReleaseAction="install", installFailures=0), Outcome.REQUEUE),
        (hr(**INSTALL_FAILED_ONCE), Outcome.DONE),
    ],
)
def test_a_repeated_action_ends_the_reconcile(obj, outcome):
    assert when_repeated(Action.UPGRADE, obj) is outcome
