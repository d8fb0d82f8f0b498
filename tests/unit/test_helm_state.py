"""ReleaseState from the release in storage, the HelmRelease and what this reconcile wants (Flux's rules)."""

from __future__ import annotations

from typing import Any

import pytest
from helm_fixtures import helm_test_hook, stored

from tide.controllers.helm import history
from tide.controllers.helm.state import Desired, ReleaseState, UnknownReleaseStatus, determine_state
from tide.controllers.helm.storage import StoredRelease, snapshot
from tide.controllers.helm.values import config_digest
from tide.shared.api.helm import HelmRelease, ReleaseSnapshot
from tide.shared.api.helm import TestHookStatus as HookStatus

VALUES = {"replicas": 1}
DESIRED = Desired("demo", "1.0.0", config_digest(VALUES))


def hr(
    history_of: list[ReleaseSnapshot] | None = None,
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    generation: int = 1,
) -> HelmRelease:
    obj = HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "apps", "generation": generation},
            "spec": {"interval": "5m", "chartRef": {"kind": "OCIRepository", "name": "c"}, **(spec or {})},
            "status": {"observedGeneration": 1, **(status or {})},
        }
    )
    obj.status.history = history_of
    return obj


def snap(release: StoredRelease, **changes: Any) -> ReleaseSnapshot:
    return snapshot(release).model_copy(update=changes)


DEPLOYED = stored(config=VALUES)
TESTED_OK = {"smoke": HookStatus(phase="Succeeded")}
TESTED_FAILED = {"smoke": HookStatus(phase="Failed")}
TEST_ON = {"test": {"enable": True}}


CASES: list[tuple[str, StoredRelease | None, HelmRelease, ReleaseState, str]] = [
    ("nothing in storage", None, hr(), ReleaseState.ABSENT, "no release in storage for object"),
    (
        "pending install",
        stored(status="pending-install"),
        hr([snap(DEPLOYED)]),
        ReleaseState.LOCKED,
        "release with status 'pending-install'",
    ),
    ("pending upgrade, unmanaged", stored(status="pending-upgrade"), hr(), ReleaseState.LOCKED, ""),
    ("a release we never made", DEPLOYED, hr(), ReleaseState.UNMANAGED, "found existing release in storage"),
    (
        "an uninstalled release, no history",
        stored(status="uninstalled"),
        hr(),
        ReleaseState.ABSENT,
        "found uninstalled release in storage",
    ),
    (
        "storage moved on since our snapshot",
        stored(version=2, config=VALUES),
        hr([snap(DEPLOYED)]),
        ReleaseState.UNMANAGED,
        "release not observed to be made for object",
    ),
    (
        "snapshot digest tampered",
        DEPLOYED,
        hr([snap(DEPLOYED, digest="sha256:0000")]),
        ReleaseState.UNMANAGED,
        "",
    ),
    (
        "legacy snapshot of the same revision",
        DEPLOYED,
        hr([snap(DEPLOYED, api_version=None)]),
        ReleaseState.IN_SYNC,
        "",
    ),
    (
        "legacy snapshot of another revision",
        DEPLOYED,
        hr([snap(DEPLOYED, api_version=None, version=7)]),
        ReleaseState.UNMANAGED,
        "",
    ),
    ("failed", stored(status="failed"), hr([snap(stored(status="failed"))]), ReleaseState.FAILED, ""),
    (
        "uninstalled, kept history",
        stored(status="uninstalled"),
        hr([snap(stored(status="uninstalled"))]),
        ReleaseState.ABSENT,
        "found uninstalled release in storage",
    ),
    ("in sync", DEPLOYED, hr([snap(DEPLOYED)]), ReleaseState.IN_SYNC, ""),
    (
        "new chart version",
        stored(config=VALUES, chart_version="0.9.0"),
        hr([snap(stored(config=VALUES, chart_version="0.9.0"))]),
        ReleaseState.OUT_OF_SYNC,
        "release chart changed",
    ),
    (
        "new values",
        stored(config={"replicas": 2}),
        hr([snap(stored(config={"replicas": 2}))]),
        ReleaseState.OUT_OF_SYNC,
        "release config values changed",
    ),
    (
        "post-renderers changed in a new generation",
        DEPLOYED,
        hr([snap(DEPLOYED)], status={"observedPostRenderersDigest": "sha256:old"}, generation=2),
        ReleaseState.OUT_OF_SYNC,
        "postrenderers digest has changed",
    ),
    (
        "post-renderers digest differs but same generation",
        DEPLOYED,
        hr([snap(DEPLOYED)], status={"observedPostRenderersDigest": "sha256:old"}),
        ReleaseState.IN_SYNC,
        "",
    ),
    (
        "common metadata changed in a new generation",
        DEPLOYED,
        hr([snap(DEPLOYED)], status={"observedCommonMetadataDigest": "sha256:old"}, generation=2),
        ReleaseState.OUT_OF_SYNC,
        "common metadata digest has changed",
    ),
    ("tests enabled, never run", DEPLOYED, hr([snap(DEPLOYED)], TEST_ON), ReleaseState.UNTESTED, ""),
    (
        "tests enabled, one hook not run yet",
        DEPLOYED,
        hr([snap(DEPLOYED, test_hooks={**TESTED_OK, "other": HookStatus()})], TEST_ON),
        ReleaseState.UNTESTED,
        "",
    ),
    ("tests passed", DEPLOYED, hr([snap(DEPLOYED, test_hooks=TESTED_OK)], TEST_ON), ReleaseState.IN_SYNC, ""),
    (
        "a chart without tests",
        DEPLOYED,
        hr([snap(DEPLOYED, test_hooks={})], TEST_ON),
        ReleaseState.IN_SYNC,
        "",
    ),
    (
        "tests failed after an upgrade",
        DEPLOYED,
        hr([snap(DEPLOYED, test_hooks=TESTED_FAILED)], TEST_ON, {"lastAttemptedReleaseAction": "upgrade"}),
        ReleaseState.FAILED,
        "release has test in failed phase",
    ),
    (
        "tests failed, test.ignoreFailures",
        DEPLOYED,
        hr(
            [snap(DEPLOYED, test_hooks=TESTED_FAILED)],
            {"test": {"enable": True, "ignoreFailures": True}},
            {"lastAttemptedReleaseAction": "upgrade"},
        ),
        ReleaseState.IN_SYNC,
        "",
    ),
    (
        "tests failed, remediation.ignoreTestFailures overrides test.ignoreFailures",
        DEPLOYED,
        hr(
            [snap(DEPLOYED, test_hooks=TESTED_FAILED)],
            {
                "test": {"enable": True, "ignoreFailures": True},
                "install": {"remediation": {"ignoreTestFailures": False}},
            },
            {"lastAttemptedReleaseAction": "install"},
        ),
        ReleaseState.FAILED,
        "",
    ),
    (
        "tests failed, no action attempted yet (adopted)",
        DEPLOYED,
        hr([snap(DEPLOYED, test_hooks=TESTED_FAILED)], TEST_ON),
        ReleaseState.IN_SYNC,
        "",
    ),
]


@pytest.mark.parametrize(
    ("release", "obj", "state", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_release_state(release, obj, state, reason):
    report = determine_state(release, obj, DESIRED)
    assert report.state is state
    if reason:
        assert report.reason == reason


def test_drift_is_reported_only_for_an_otherwise_in_sync_release():
    assert (
        determine_state(DEPLOYED, hr([snap(DEPLOYED)]), DESIRED, drifted=True).state is ReleaseState.DRIFTED
    )
    new_values = stored(config={"replicas": 2})
    state = determine_state(new_values, hr([snap(new_values)]), DESIRED, drifted=True).state
    assert state is ReleaseState.OUT_OF_SYNC


def test_a_superseded_latest_release_is_an_error_not_a_guess():
    release = stored(status="superseded")
    with pytest.raises(UnknownReleaseStatus):
        determine_state(release, hr([snap(release)]), DESIRED)


def test_tested_in_hooks_with_test_hook_phases():
    release = stored(hooks=[helm_test_hook("smoke", "Failed")])
    tested = snap(release, test_hooks=release.test_hooks())
    assert history.has_been_tested(tested)
    assert history.has_test_in_phase(tested, "Failed")


def good(version: int, status: str = "superseded", **kw: Any) -> ReleaseSnapshot:
    return snap(stored(version=version, status=status), **kw)


@pytest.mark.parametrize(
    ("snapshots", "ignore_tests", "kept", "previous"),
    [
        ([good(1), good(2), good(3, "failed")], False, [3, 2], 2),
        ([good(1), good(2, "failed"), good(3, "failed")], False, [3, 2, 1], 1),
        ([good(1), good(2, test_hooks=TESTED_FAILED), good(3, "failed")], False, [3, 2, 1], 1),
        ([good(1), good(2, test_hooks=TESTED_FAILED), good(3, "failed")], True, [3, 2], 2),
        ([good(v, "failed") for v in range(1, 8)], False, [7, 6, 5, 4, 3], None),
        ([good(1, "deployed")], False, [1], None),
    ],
)
def test_history_truncates_after_the_previous_good_release(snapshots, ignore_tests, kept, previous):
    truncated = history.truncate(snapshots, ignore_tests)
    assert [s.version for s in truncated] == kept
    target = history.previous(truncated, ignore_tests)
    assert (target.version if target else None) == previous
