"""kstatus rules (cli-utils order as Flux uses it), one case per rule and kind."""

from datetime import UTC, datetime, timedelta
from typing import Any

from tide.shared.kube.kstatus import StatusKind, compute_status

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def obj(api_version: str, kind: str, spec: Any = None, status: Any = None, **meta: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", **meta}}
    if spec is not None:
        out["spec"] = spec
    if status is not None:
        out["status"] = status
    return out


def cond(type_: str, status: str, reason: str = "", message: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, **extra}


def kind_of(o: dict[str, Any]) -> StatusKind:
    return compute_status(o, NOW).status


def test_deletion_timestamp_is_terminating_first() -> None:
    o = obj("v1", "ConfigMap", deletionTimestamp="2026-01-01T00:00:00Z")
    assert kind_of(o) is StatusKind.TERMINATING


def test_observed_generation_behind_is_in_progress() -> None:
    o = obj("apps/v1", "Deployment", {"replicas": 1}, {"observedGeneration": 1}, generation=2)
    assert kind_of(o) is StatusKind.IN_PROGRESS


def test_reconciling_true_is_in_progress_and_stalled_true_is_failed() -> None:
    r = obj("x.io/v1", "Thing", {}, {"conditions": [cond("Reconciling", "True", "Progressing", "working")]})
    s = obj("x.io/v1", "Thing", {}, {"conditions": [cond("Stalled", "True", "Bad", "broken")]})
    assert compute_status(r).status is StatusKind.IN_PROGRESS
    assert compute_status(r).message == "working"
    assert kind_of(s) is StatusKind.FAILED


def deployment(
    status: dict[str, Any], replicas: int = 2, conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return obj(
        "apps/v1",
        "Deployment",
        {"replicas": replicas},
        {"observedGeneration": 1, **status, "conditions": conditions or []},
        generation=1,
    )


AVAILABLE = [cond("Progressing", "True", "NewReplicaSetAvailable"), cond("Available", "True")]


def test_deployment_rules() -> None:
    full = {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    assert kind_of(deployment(full, conditions=AVAILABLE)) is StatusKind.CURRENT
    assert kind_of(deployment(full, conditions=[cond("Available", "True")])) is StatusKind.IN_PROGRESS
    assert kind_of(deployment({**full, "replicas": 1}, conditions=AVAILABLE)) is StatusKind.IN_PROGRESS
    assert kind_of(deployment({**full, "updatedReplicas": 1}, conditions=AVAILABLE)) is StatusKind.IN_PROGRESS
    assert kind_of(deployment({**full, "replicas": 3}, conditions=AVAILABLE)) is StatusKind.IN_PROGRESS
    assert (
        kind_of(deployment({**full, "availableReplicas": 1}, conditions=AVAILABLE)) is StatusKind.IN_PROGRESS
    )
    assert kind_of(deployment({**full, "readyReplicas": 1}, conditions=AVAILABLE)) is StatusKind.IN_PROGRESS
    deadline = [cond("Progressing", "False", "ProgressDeadlineExceeded")]
    assert kind_of(deployment(full, conditions=deadline)) is StatusKind.FAILED


def test_statefulset_rules() -> None:
    def sts(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        return obj("apps/v1", "StatefulSet", spec, {"observedGeneration": 1, **status}, generation=1)

    done = {
        "replicas": 2,
        "readyReplicas": 2,
        "currentReplicas": 2,
        "updatedReplicas": 2,
        "currentRevision": "a",
        "updateRevision": "a",
    }
    assert kind_of(sts({"replicas": 2}, done)) is StatusKind.CURRENT
    assert kind_of(sts({"replicas": 2}, {**done, "readyReplicas": 1})) is StatusKind.IN_PROGRESS
    assert kind_of(sts({"replicas": 2}, {**done, "updateRevision": "b"})) is StatusKind.IN_PROGRESS
    assert kind_of(sts({"replicas": 2, "updateStrategy": {"type": "OnDelete"}}, {})) is StatusKind.CURRENT
    partitioned = {"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 2}}}
    assert (
        kind_of(sts(partitioned, {**done, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1}))
        is StatusKind.CURRENT
    )
    assert (
        kind_of(sts(partitioned, {**done, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 0}))
        is StatusKind.IN_PROGRESS
    )


def test_daemonset_rules() -> None:
    ready = {
        "observedGeneration": 1,
        "desiredNumberScheduled": 2,
        "currentNumberScheduled": 2,
        "updatedNumberScheduled": 2,
        "numberAvailable": 2,
        "numberReady": 2,
    }
    assert kind_of(obj("apps/v1", "DaemonSet", {}, ready, generation=1)) is StatusKind.CURRENT
    assert (
        kind_of(obj("apps/v1", "DaemonSet", {}, {**ready, "numberReady": 1}, generation=1))
        is StatusKind.IN_PROGRESS
    )
    assert (
        kind_of(obj("apps/v1", "DaemonSet", {}, {"desiredNumberScheduled": 0}, generation=1))
        is StatusKind.IN_PROGRESS
    )


def test_job_rules() -> None:
    assert (
        kind_of(obj("batch/v1", "Job", {}, {"conditions": [cond("Complete", "True")]})) is StatusKind.CURRENT
    )
    assert kind_of(obj("batch/v1", "Job", {}, {"conditions": [cond("Failed", "True")]})) is StatusKind.FAILED
    assert kind_of(obj("batch/v1", "Job", {}, {})) is StatusKind.IN_PROGRESS
    assert (
        kind_of(obj("batch/v1", "Job", {}, {"startTime": "2026-01-01T00:00:00Z", "active": 1}))
        is StatusKind.CURRENT
    )


def test_pvc_service_and_always_current_kinds() -> None:
    assert kind_of(obj("v1", "PersistentVolumeClaim", {}, {"phase": "Bound"})) is StatusKind.CURRENT
    assert kind_of(obj("v1", "PersistentVolumeClaim", {}, {"phase": "Pending"})) is StatusKind.IN_PROGRESS
    assert kind_of(obj("v1", "Service", {"type": "LoadBalancer"}, {})) is StatusKind.IN_PROGRESS
    assert (
        kind_of(obj("v1", "Service", {"type": "ClusterIP", "clusterIP": "10.0.0.1"}, {}))
        is StatusKind.CURRENT
    )
    for api_version, kind in (
        ("v1", "Secret"),
        ("v1", "ConfigMap"),
        ("batch/v1", "CronJob"),
        ("policy/v1", "PodDisruptionBudget"),
    ):
        assert (
            kind_of(obj(api_version, kind, {}, {"conditions": [cond("Ready", "False")]}))
            is StatusKind.CURRENT
        )


def test_pod_rules() -> None:
    assert kind_of(obj("v1", "Pod", {}, {"phase": "Succeeded"})) is StatusKind.CURRENT
    assert (
        kind_of(obj("v1", "Pod", {}, {"phase": "Running", "conditions": [cond("Ready", "True")]}))
        is StatusKind.CURRENT
    )
    assert (
        kind_of(obj("v1", "Pod", {}, {"phase": "Running", "conditions": [cond("Ready", "False")]}))
        is StatusKind.IN_PROGRESS
    )
    crash = {
        "phase": "Running",
        "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
    }
    assert kind_of(obj("v1", "Pod", {}, crash)) is StatusKind.FAILED
    since = (NOW - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    unsched = cond("PodScheduled", "False", "Unschedulable", lastTransitionTime=since)
    assert kind_of(obj("v1", "Pod", {}, {"phase": "Pending", "conditions": [unsched]})) is StatusKind.FAILED
    fresh = {**unsched, "lastTransitionTime": recent}
    assert (
        kind_of(obj("v1", "Pod", {}, {"phase": "Pending", "conditions": [fresh]})) is StatusKind.IN_PROGRESS
    )


def test_crd_rules() -> None:
    crd = "apiextensions.k8s.io/v1"
    assert (
        kind_of(obj(crd, "CustomResourceDefinition", {}, {"conditions": [cond("Established", "True")]}))
        is StatusKind.CURRENT
    )
    assert (
        kind_of(obj(crd, "CustomResourceDefinition", {}, {"conditions": [cond("NamesAccepted", "False")]}))
        is StatusKind.FAILED
    )
    installing = [cond("Established", "False", "Installing")]
    assert (
        kind_of(obj(crd, "CustomResourceDefinition", {}, {"conditions": installing}))
        is StatusKind.IN_PROGRESS
    )
    assert (
        kind_of(obj(crd, "CustomResourceDefinition", {}, {"conditions": [cond("Established", "False", "X")]}))
        is StatusKind.FAILED
    )


def test_other_kinds_use_ready_and_default_to_current() -> None:
    ks = "kustomize.toolkit.fluxcd.io/v1"
    assert (
        kind_of(obj(ks, "Kustomization", {}, {"conditions": [cond("Ready", "True")]})) is StatusKind.CURRENT
    )
    assert (
        kind_of(obj(ks, "Kustomization", {}, {"conditions": [cond("Ready", "False")]}))
        is StatusKind.IN_PROGRESS
    )
    assert (
        kind_of(obj(ks, "Kustomization", {}, {"conditions": [cond("Ready", "Unknown")]}))
        is StatusKind.IN_PROGRESS
    )
    assert kind_of(obj("x.io/v1", "Widget", {}, {})) is StatusKind.CURRENT
    assert kind_of(obj("v1", "Namespace")) is StatusKind.CURRENT
