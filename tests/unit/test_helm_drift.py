"""Drift of a release's objects, as helm-controller compares them (pure parts, table-tested): the
objects of a manifest, opt-outs and ignore rules, the diff from live to dry-run, Flux's messages,
the Drifted condition and what the loop does about drift."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from helm_fixtures import stored

from tide.controllers.helm.atomic import AtomicRelease
from tide.controllers.helm.drift import (
    DiffType,
    DriftReport,
    ObjectDiff,
    correction_report,
    detect,
    detected_message,
    ignored_paths,
    json_diff,
    manifest_documents,
    object_diff,
    release_objects,
)
from tide.controllers.helm.state import (
    Action,
    ActionType,
    Decision,
    Desired,
    Outcome,
    ReleaseState,
    RollbackTarget,
    after_action,
    drift_condition,
    loop_step_allowed,
    when_repeated,
)
from tide.controllers.helm.storage import StoredRelease, snapshot
from tide.shared.api.helm import HelmRelease, IgnoreRule
from tide.shared.ignorerules import SelectorInvalid, label_selector_matches

MANIFEST = """---
# Source: app/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{port: 80}]
---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
"""


def deployment(replicas: int = 2, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps", "labels": {"app": "web"}, **meta},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}},
        "status": {"replicas": replicas},
    }


def test_release_objects_carry_helm_metadata():
    objects = release_objects(MANIFEST, "app", "apps")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Service", "web"),
        ("Deployment", "web"),
    ]
    meta = objects[1]["metadata"]
    assert meta["labels"] == {"app": "web", "app.kubernetes.io/managed-by": "Helm"}
    assert meta["annotations"] == {
        "meta.helm.sh/release-name": "app",
        "meta.helm.sh/release-namespace": "apps",
    }


def test_documents_that_are_not_objects_are_skipped():
    text = "kind: X\n---\n- a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: nope\n---\n" + MANIFEST
    assert [o["kind"] for o in release_objects(text, "app", "apps")] == ["Service", "Deployment"]


def test_a_manifest_with_yaml_aliases_is_refused():
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(yaml.YAMLError):
        manifest_documents(bomb)


def rule(paths: list[str], **target: str) -> IgnoreRule:
    return IgnoreRule.model_validate({"paths": paths, **({"target": target} if target else {})})


@pytest.mark.parametrize(
    ("rules", "paths"),
    [
        ([], []),
        ([rule(["/spec/replicas"])], ["/spec/replicas"]),
        ([rule(["/spec/replicas"], kind="Deployment")], ["/spec/replicas"]),
        ([rule(["/spec/replicas"], kind="Service")], []),
        ([rule(["/spec/replicas"], kind="Deploy.*", name="w.b")], ["/spec/replicas"]),
        ([rule(["/spec/replicas"], kind="Deploy")], []),  # anchored, as Go's selector regexes
        ([rule(["/spec/replicas"], group="apps", version="v1")], ["/spec/replicas"]),
        ([rule(["/spec/replicas"], namespace="other")], []),
        ([rule(["/spec/replicas"], labelSelector="app=web")], ["/spec/replicas"]),
        ([rule(["/spec/replicas"], labelSelector="app in (db, cache)")], []),
        ([rule(["/a"]), rule(["/b"], kind="Deployment")], ["/a", "/b"]),
        ([rule([""], kind="Deployment")], [""]),
    ],
)
def test_ignore_rules_select_objects(rules, paths):
    assert ignored_paths(rules, deployment()) == paths


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web,tier!=db", {"app": "web", "tier": "fe"}, True),
        ("app", {}, False),
        ("!app", {}, True),
        ("app in (web, api)", {"app": "api"}, True),
        ("app notin (web, api)", {"app": "api"}, False),
        ("app notin (web), tier", {"app": "db", "tier": "x"}, True),
    ],
)
def test_label_selectors(selector, labels, matches):
    assert label_selector_matches(selector, labels) is matches


def test_a_bad_selector_regex_is_a_typed_error():
    with pytest.raises(SelectorInvalid):
        ignored_paths([rule(["/x"], kind="(")], deployment())


@pytest.mark.parametrize(
    ("src", "dst", "ops"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 2}, [{"op": "replace", "path": "/a", "value": 2}]),
        ({"a": 1}, {"a": True}, [{"op": "replace", "path": "/a", "value": True}]),
        ({"a": 1}, {"a": 1.0}, []),
        ({}, {"a/b": 1}, [{"op": "add", "path": "/a~1b", "value": 1}]),
        ({"a": 1, "b": 2}, {"b": 2}, [{"op": "remove", "path": "/a"}]),
        (
            [1, 2],
            [1, 3, 4],
            [{"op": "replace", "path": "/1", "value": 3}, {"op": "add", "path": "/2", "value": 4}],
        ),
        ([1, 2, 3], [1], [{"op": "remove", "path": "/2"}, {"op": "remove", "path": "/1"}]),
        ({"a": {"b": [1]}}, {"a": "x"}, [{"op": "replace", "path": "/a", "value": "x"}]),
    ],
)
def test_json_diff(src, dst, ops):
    assert json_diff(src, dst) == ops


OPT_OUT = {"annotations": {"helm.toolkit.fluxcd.io/driftDetection": "disabled"}}
OPT_OUT_LABEL = {"labels": {"helm.toolkit.fluxcd.io/driftDetection": "disabled"}}

DIFFS: list[
    tuple[str, dict[str, Any], dict[str, Any] | None, dict[str, Any] | None, list[str], DiffType, int]
] = [
    ("unchanged", deployment(), deployment(), deployment(), [], DiffType.NONE, 0),
    ("deleted object", deployment(), None, None, [], DiffType.CREATE, 0),
    ("replicas changed by hand", deployment(), deployment(5), deployment(), [], DiffType.UPDATE, 1),
    ("replicas ignored", deployment(), deployment(5), deployment(), ["/spec/replicas"], DiffType.NONE, 0),
    (
        "status never counts",
        deployment(),
        {**deployment(), "status": {"x": 1}},
        deployment(),
        [],
        DiffType.NONE,
        0,
    ),
    ("whole object ignored", deployment(), deployment(5), deployment(), [""], DiffType.EXCLUDE, 0),
    ("opted out in the chart", deployment(**OPT_OUT), deployment(5), deployment(), [], DiffType.EXCLUDE, 0),
    (
        "opted out in the cluster",
        deployment(),
        deployment(5, **OPT_OUT),
        deployment(),
        [],
        DiffType.EXCLUDE,
        0,
    ),
    (
        "opted out by label",
        deployment(),
        deployment(5, **OPT_OUT_LABEL),
        deployment(),
        [],
        DiffType.EXCLUDE,
        0,
    ),
    (
        "a label a controller added is not drift",
        deployment(),
        deployment(labels={"app": "web", "extra": "x"}),
        deployment(labels={"app": "web", "extra": "x"}),
        [],
        DiffType.NONE,
        0,
    ),
    (
        "a label removed by hand is drift",
        deployment(),
        deployment(labels={}),
        deployment(),
        [],
        DiffType.UPDATE,
        1,
    ),
]


@pytest.mark.parametrize(
    ("desired", "live", "dry_run", "paths", "kind", "ops"), [c[1:] for c in DIFFS], ids=[c[0] for c in DIFFS]
)
def test_object_diff(desired, live, dry_run, paths, kind, ops):
    diff = object_diff(desired, live, dry_run, paths)
    assert (diff.type, len(diff.patch)) == (kind, ops)


def test_the_patch_goes_from_live_to_desired_and_leaves_ignored_fields_alone():
    live = deployment(5)
    live["spec"]["paused"] = True  # someone else's field, kept by the dry-run apply
    dry_run = deployment(2)
    dry_run["spec"]["paused"] = True
    dry_run["spec"]["template"]["spec"]["containers"][0]["image"] = "a:2"
    diff = object_diff(deployment(), live, dry_run, ["/spec/replicas"])
    assert diff.patch == [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "a:2"}]


def test_flux_messages():
    report = DriftReport(
        [
            ObjectDiff(
                DiffType.UPDATE, deployment(), [{"op": "replace", "path": "/spec/replicas", "value": 2}]
            ),
            ObjectDiff(DiffType.CREATE, {**deployment(), "kind": "Service"}),
            ObjectDiff(DiffType.EXCLUDE, {**deployment(), "kind": "ConfigMap"}),
            ObjectDiff(DiffType.NONE, {**deployment(), "kind": "Secret"}),
        ]
    )
    assert report.has_changes
    assert detected_message("apps/app.v1", report) == (
        "Cluster state of release apps/app.v1 has drifted from the desired state:\n"
        "Deployment/apps/web changed (0 additions, 1 changes, 0 removals)\n"
        "Service/apps/web removed\n"
        "ConfigMap/apps/web excluded"
    )
    assert report.brief() == "removed: 1, changed: 1, excluded: 1"
    assert not DriftReport([ObjectDiff(DiffType.EXCLUDE, deployment())]).has_changes


@pytest.mark.parametrize(
    ("changes", "errors", "expected"),
    [
        ([], [], None),
        (
            ["Deployment/apps/web configured"],
            [],
            (
                "Normal",
                "DriftCorrected",
                "Cluster state of release apps/app.v1 has been corrected:\nDeployment/apps/web configured",
            ),
        ),
        (
            [],
            ["Service/apps/web creation failure: forbidden"],
            (
                "Warning",
                "DriftCorrectionFailed",
                "Failed to correct cluster state of release apps/app.v1:\n"
                "Service/apps/web creation failure: forbidden",
            ),
        ),
        (
            ["Deployment/apps/web configured"],
            ["Service/apps/web creation failure: forbidden"],
            (
                "Warning",
                "DriftCorrectionFailed",
                "Failed to partially correct cluster state of release apps/app.v1:\n"
                "Service/apps/web creation failure: forbidden\n\n"
                "Successful corrections:\nDeployment/apps/web configured",
            ),
        ),
    ],
)
def test_correction_events(changes, errors, expected):
    assert correction_report("apps/app.v1", changes, errors) == expected


@pytest.mark.parametrize(
    ("state", "mode", "drifted"),
    [
        (ReleaseState.DRIFTED, "enabled", True),
        (ReleaseState.DRIFTED, "warn", True),
        (ReleaseState.IN_SYNC, "enabled", False),
        (ReleaseState.IN_SYNC, "warn", False),
        (ReleaseState.IN_SYNC, "disabled", None),
        (ReleaseState.OUT_OF_SYNC, "enabled", None),
        (ReleaseState.UNTESTED, "warn", None),
    ],
)
def test_drifted_condition(state, mode, drifted):
    assert drift_condition(state, mode) is drifted


# --- the loop --------------------------------------------------------------------------------------


def release_with(mode: str) -> HelmRelease:
    release = stored(version=1, status="deployed", config={})
    return HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "apps", "generation": 1},
            "spec": {
                "interval": "5m",
                "chartRef": {"kind": "OCIRepository", "name": "c"},
                "driftDetection": {"mode": mode},
            },
            "status": {
                "observedGeneration": 1,
                "history": [snapshot(release, action="install").model_dump(by_alias=True, exclude_none=True)],
            },
        }
    )


class DriftingCluster:
    """One deployed release whose objects drift until corrected (or forever, when `sticky`)."""

    def __init__(self, sticky: bool = False) -> None:
        self.release = stored(version=1, status="deployed", config={})
        self.drifted = True
        self.sticky = sticky
        self.states: list[ReleaseState] = []

    async def observe(self) -> StoredRelease:
        return self.release

    async def run(self, action: Action, decision: Decision) -> bool:
        assert action is Action.CORRECT_DRIFT
        self.drifted = self.sticky
        return False

    async def patch(self) -> None:
        return None

    async def target(self, _: Any) -> RollbackTarget:
        return RollbackTarget.VERIFIED

    async def diff(self, _: StoredRelease) -> bool:
        return self.drifted

    def loop(self) -> AtomicRelease:
        return AtomicRelease(
            self.observe, self.run, self.patch, self.target, drifted=self.diff, observed=self.states.append
        )


@pytest.mark.parametrize(
    ("mode", "sticky", "actions", "states", "outcome"),
    [
        (
            "enabled",
            False,
            [Action.CORRECT_DRIFT],
            [ReleaseState.DRIFTED, ReleaseState.IN_SYNC],
            Outcome.DONE,
        ),
        ("warn", False, [], [ReleaseState.DRIFTED], Outcome.DONE),
        ("disabled", False, [], [ReleaseState.IN_SYNC], Outcome.DONE),
        # A correction that does not stick runs once per reconcile, then waits for the interval.
        ("enabled", True, [Action.CORRECT_DRIFT], [ReleaseState.DRIFTED, ReleaseState.DRIFTED], Outcome.DONE),
    ],
)
async def test_the_loop_corrects_drift_once_per_reconcile(mode, sticky, actions, states, outcome):
    obj = release_with(mode)
    cluster = DriftingCluster(sticky)
    digest = obj.status.history[0].config_digest  # type: ignore[index]
    result = await cluster.loop().reconcile(obj, Desired("demo", "1.0.0", digest or ""))
    assert (result.actions, cluster.states, result.outcome) == (actions, states, outcome)


def test_a_repeated_drift_correction_waits_for_the_interval():
    assert when_repeated(Action.CORRECT_DRIFT, release_with("enabled")) is Outcome.DONE


def test_a_drift_correction_never_fails_the_loop_by_itself():
    """The runner reports a failed correction by Event and returns False; the loop goes on."""
    outcome = after_action(Action.CORRECT_DRIFT, release_with("enabled"), failed=False)
    assert outcome is Outcome.CONTINUE
    assert loop_step_allowed(Action.CORRECT_DRIFT, []) and not loop_step_allowed(
        Action.CORRECT_DRIFT, [ActionType.DRIFT_CORRECTION]
    )


def test_selector_regexes_run_on_re2():
    """Tenant-written selectors: a pattern that backtracks exponentially in Python's `re` returns at
    once, and a backreference (not in Go's regexp either) is a clear error."""
    hostile = deployment()
    hostile["metadata"]["name"] = "a" * 64 + "!"
    assert ignored_paths([rule(["/x"], name="(a+)+$")], hostile) == []
    with pytest.raises(SelectorInvalid, match="invalid regex"):
        ignored_paths([rule(["/x"], name=r"(a)\1")], deployment())


def test_a_rejected_secret_patch_reports_only_the_reason():
    from tide.controllers.helm.drift import masked_reason

    error = 'Secret "db" is invalid: data[password]: Invalid value: "hunter2": too long'
    assert masked_reason("Secret", error) == "too long"
    assert masked_reason("ConfigMap", error) == error


async def test_releases_diffed_at_once_share_the_controllers_bound_on_dry_runs():
    """Each dry-run in flight holds a connection: with one bound for the controller, four releases
    diffed at once never have more requests in flight than the bound, however many objects."""
    in_flight = peak = 0

    class Cluster:
        async def resource(self, api_version: str, kind: str) -> Any:
            return SimpleNamespace(namespaced=True)

        async def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return deployment()

        async def apply(self, obj: dict[str, Any], **_: Any) -> Any:
            await asyncio.sleep(0.01)
            return deployment()

    manifest = "".join(
        f"---\n{yaml.safe_dump(deployment() | {'metadata': {'name': f'app-{i}'}})}" for i in range(6)
    )
    bound = asyncio.Semaphore(3)
    reports = await asyncio.gather(
        *(detect(Cluster(), manifest, "app", "apps", [], bound) for _ in range(4))  # type: ignore[arg-type]
    )
    assert [len(r.diffs) for r in reports] == [6] * 4
    assert peak == 3
