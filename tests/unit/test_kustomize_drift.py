"""Which changes to applied objects are drift, and the fight detector's backoff (pure rules)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tide.controllers.kustomize.drift import (
    FightDetector,
    correction_disabled,
    is_drift,
    other_writer,
    owner_of,
)
from tide.controllers.kustomize.fields import Fingerprint, digest

MANAGER = "kustomize-controller"
OURS = {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}}


def entry(
    manager: str, fields: dict[str, Any], time: str, operation: str = "Update", sub: str = ""
) -> dict[str, Any]:
    out = {"manager": manager, "operation": operation, "time": time, "fieldsV1": fields}
    if sub:
        out["subresource"] = sub
    return out


def deployment(
    replicas: int = 1, managed: list[dict[str, Any]] | None = None, **annotations: str
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "apps",
            "labels": {
                "app": "web",
                "kustomize.toolkit.fluxcd.io/name": "app",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
            },
            "annotations": annotations,
            "managedFields": managed
            if managed is not None
            else [entry(MANAGER, OURS, "2026-01-01T00:00:00Z", "Apply")],
        },
        "spec": {"replicas": replicas, "template": {}},
        "status": {"readyReplicas": 0},
    }


APPLIED = deployment()
FINGERPRINT = Fingerprint.of(digest({}), APPLIED, MANAGER)


def scaled_by(manager: str, replicas: int) -> dict[str, Any]:
    """Another manager took spec.replicas (an Update moves ownership from us)."""
    ours = {"f:metadata": OURS["f:metadata"]}
    return deployment(
        replicas,
        [
            entry(MANAGER, ours, "2026-01-01T00:00:00Z", "Apply"),
            entry(manager, {"f:spec": {"f:replicas": {}}}, "2026-01-01T00:01:00Z", sub="scale"),
        ],
    )


def status_update() -> dict[str, Any]:
    obj = copy.deepcopy(APPLIED)
    obj["status"] = {"readyReplicas": 1}
    obj["metadata"]["managedFields"].append(
        entry(
            "kube-controller-manager",
            {"f:status": {"f:readyReplicas": {}}},
            "2026-01-01T00:02:00Z",
            sub="status",
        )
    )
    return obj


def status_update_while_drifted() -> tuple[dict[str, Any], dict[str, Any]]:
    old = scaled_by("kubectl", 5)
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 5}
    new["metadata"]["managedFields"].append(
        entry(
            "kube-controller-manager", {"f:status": {"f:replicas": {}}}, "2026-01-01T00:02:00Z", sub="status"
        )
    )
    return new, old


def not_ours_field() -> dict[str, Any]:
    """An HPA-style writer on a field we do not own (e.g. spec.ignore'd or absent from Git)."""
    obj = copy.deepcopy(APPLIED)
    obj["spec"]["paused"] = True
    obj["metadata"]["managedFields"].append(
        entry("hpa", {"f:spec": {"f:paused": {}}}, "2026-01-01T00:03:00Z")
    )
    return obj


def reapplied_by_us() -> tuple[dict[str, Any], dict[str, Any]]:
    """Our own apply whose watch event arrives before its fingerprint is recorded."""
    old = scaled_by("kubectl", 5)
    new = deployment(1, [entry(MANAGER, OURS, "2026-01-01T00:05:00Z", "Apply")])
    return new, old


@pytest.mark.parametrize(
    ("event", "obj", "old", "fingerprint", "expected"),
    [
        ("MODIFIED", scaled_by("kubectl", 5), APPLIED, FINGERPRINT, True),
        ("DELETED", APPLIED, APPLIED, FINGERPRINT, True),
        ("MODIFIED", status_update(), APPLIED, FINGERPRINT, False),
        ("MODIFIED", not_ours_field(), APPLIED, FINGERPRINT, False),
        ("MODIFIED", APPLIED, APPLIED, FINGERPRINT, False),
        ("ADDED", scaled_by("kubectl", 5), None, FINGERPRINT, False),
        ("MODIFIED", scaled_by("kubectl", 5), APPLIED, None, False),  # not applied by this process
        ("DELETED", APPLIED, APPLIED, None, False),  # pruned by us: fingerprint forgotten first
        ("MODIFIED", *reapplied_by_us(), FINGERPRINT, False),
        ("MODIFIED", *status_update_while_drifted(), FINGERPRINT, False),  # the drift was seen already
    ],
    ids=[
        "scaled",
        "deleted",
        "status",
        "field-not-ours",
        "no-change",
        "added",
        "no-fingerprint",
        "pruned",
        "own-apply",
        "status-while-drifted",
    ],
)
def test_which_changes_are_drift(event: str, obj: Any, old: Any, fingerprint: Any, expected: bool) -> None:
    assert is_drift(event, obj, old, fingerprint, MANAGER) is expected


@pytest.mark.parametrize("policy", ["Ignore", "IfNotPresent", "ignore"])
def test_ssa_ignore_and_if_not_present_are_never_corrected(policy: str) -> None:
    ssa = {"kustomize.toolkit.fluxcd.io/ssa": policy}
    obj = scaled_by("kubectl", 5)
    obj["metadata"]["annotations"] = ssa
    assert not is_drift("MODIFIED", obj, APPLIED, FINGERPRINT, MANAGER)
    assert not is_drift("DELETED", deployment(**ssa), None, FINGERPRINT, MANAGER)


def test_other_writer_names_the_manager_that_changed_the_object() -> None:
    assert other_writer(scaled_by("hpa-fighter", 4), APPLIED, MANAGER) == "hpa-fighter"
    assert other_writer(*reapplied_by_us(), MANAGER) == ""


def test_owner_and_opt_out() -> None:
    assert owner_of(APPLIED) == ("flux-system", "app")
    assert owner_of({"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "app"}}}) is None
    annotated = {"metadata": {"annotations": {"kustomize.toolkit.fluxcd.io/drift-correction": "Disabled"}}}
    assert correction_disabled(annotated)
    assert not correction_disabled({"metadata": {}})


def test_a_fight_backs_off_exponentially_and_warns_once() -> None:
    detector = FightDetector(threshold=3, base=1.0, cap=8.0, quiet=60.0)
    verdicts = [detector.observe("web", now=float(i)) for i in range(8)]
    assert [v.delay for v in verdicts] == [0, 0, 0, 1, 2, 4, 8, 8]
    assert [v.warn for v in verdicts] == [False, False, False, True, False, False, False, False]
    # Other objects are independent.
    assert detector.observe("cm", now=8.0).delay == 0


def test_a_quiet_period_ends_the_fight() -> None:
    detector = FightDetector(threshold=1, base=1.0, cap=8.0, quiet=10.0)
    assert detector.observe("web", 0.0).delay == 0
    assert detector.observe("web", 1.0).warn
    later = detector.observe("web", 100.0)
    assert later.delay == 0 and not later.warn
    assert detector.observe("web", 101.0).warn  # a new fight warns again


def test_the_controller_flag_turns_real_time_correction_off() -> None:
    from tide.controllers.kustomize.main import arg_parser, options_from
    from tide.controllers.kustomize.reconciler import KustomizationReconciler

    assert options_from(arg_parser().parse_args([])).drift_correction
    off = options_from(arg_parser().parse_args(["--realtime-drift-correction=false"]))
    assert not off.drift_correction
    reconciler = KustomizationReconciler(off)

    class Ctx:
        kube = object()

    assert reconciler._applier(Ctx()).on_change is None  # type: ignore[arg-type]
    assert KustomizationReconciler()._applier(Ctx()).on_change is not None  # type: ignore[arg-type]
