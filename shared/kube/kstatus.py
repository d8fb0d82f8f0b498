"""kstatus: whether an object has reached its desired state (cli-utils' rules as Flux uses them).

A pure function of the object: Current, InProgress, Failed, Terminating or Unknown, with a message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

POD_UNSCHEDULABLE_GRACE = 15.0


class StatusKind(enum.StrEnum):
    CURRENT = "Current"
    IN_PROGRESS = "InProgress"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    UNKNOWN = "Unknown"
    NOT_FOUND = "NotFound"


@dataclass(frozen=True)
class Status:
    status: StatusKind
    message: str = ""

    @property
    def current(self) -> bool:
        return self.status is StatusKind.CURRENT


def _current(message: str = "Resource is current") -> Status:
    return Status(StatusKind.CURRENT, message)


def _progress(message: str) -> Status:
    return Status(StatusKind.IN_PROGRESS, message)


def _failed(message: str) -> Status:
    return Status(StatusKind.FAILED, message)


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    status = obj.get("status") or {}
    conditions = status.get("conditions") if isinstance(status, dict) else None
    found: dict[str, dict[str, Any]] = {}
    for condition in conditions or []:
        if isinstance(condition, dict) and condition.get("type"):
            found[str(condition["type"])] = condition
    return found


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def compute_status(obj: dict[str, Any], now: datetime | None = None) -> Status:
    """The kstatus of obj, evaluated in cli-utils' order."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return Status(StatusKind.TERMINATING, "Resource scheduled for deletion")
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    assert isinstance(status, dict)
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and _int(observed) != _int(generation):
        return _progress(
            f"{obj.get('kind', 'Resource')} generation is {generation}, but latest "
            f"observed generation is {observed}"
        )
    conditions = _conditions(obj)
    reconciling = conditions.get("Reconciling")
    if reconciling and reconciling.get("status") == "True":
        return _progress(str(reconciling.get("message") or reconciling.get("reason") or "Reconciling"))
    stalled = conditions.get("Stalled")
    if stalled and stalled.get("status") == "True":
        return _failed(str(stalled.get("message") or stalled.get("reason") or "Stalled"))
    kind = str(obj.get("kind", ""))
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    rule = _CORE_RULES.get((group, kind))
    if rule is not None:
        return rule(obj, status, conditions, now or datetime.now(UTC))
    ready = conditions.get("Ready")
    if ready is not None:
        if ready.get("status") == "True":
            return _current(str(ready.get("message") or "Resource is Ready"))
        return _progress(str(ready.get("message") or ready.get("reason") or "Resource not Ready"))
    return _current()


Conditions = dict[str, dict[str, Any]]


def _deployment(obj: dict[str, Any], status: dict[str, Any], conditions: Conditions, now: datetime) -> Status:
    progressing = conditions.get("Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return _failed(f"Progress deadline exceeded: {progressing.get('message', '')}".rstrip(": "))
    spec = obj.get("spec") or {}
    want = _int(spec.get("replicas"), 1)
    have = _int(status.get("replicas"))
    updated = _int(status.get("updatedReplicas"))
    ready = _int(status.get("readyReplicas"))
    available = _int(status.get("availableReplicas"))
    if want > have:
        return _progress(f"Replicas: {have}/{want}")
    if want > updated:
        return _progress(f"Updated: {updated}/{want}")
    if have > want:
        return _progress(f"Pending termination: {have - want}")
    if updated > available:
        return _progress(f"Available: {available}/{updated}")
    if want > ready:
        return _progress(f"Ready: {ready}/{want}")
    available_cond = conditions.get("Available")
    if (
        progressing
        and progressing.get("status") == "True"
        and progressing.get("reason") == "NewReplicaSetAvailable"
        and available_cond
        and available_cond.get("status") == "True"
    ):
        return _current(f"Deployment is available. Replicas: {have}")
    return _progress("Deployment rollout is in progress")


def _statefulset(
    obj: dict[str, Any], status: dict[str, Any], conditions: Conditions, now: datetime
) -> Status:
    spec = obj.get("spec") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return _current("StatefulSet is using the OnDelete update strategy")
    want = _int(spec.get("replicas"), 1)
    have = _int(status.get("replicas"))
    ready = _int(status.get("readyReplicas"))
    current = _int(status.get("currentReplicas"))
    updated = _int(status.get("updatedReplicas"))
    if want > have:
        return _progress(f"Replicas: {have}/{want}")
    if want > ready:
        return _progress(f"Ready: {ready}/{want}")
    partition = _int((strategy.get("rollingUpdate") or {}).get("partition"))
    if partition > 0:
        if updated < want - partition:
            return _progress(f"updated: {updated}/{want - partition}")
        return _current(f"Partition rollout complete. updated: {updated}")
    if have > want:
        return _progress(f"Pending termination: {have - want}")
    if want > current:
        return _progress(f"current: {current}/{want}")
    if status.get("currentRevision") != status.get("updateRevision"):
        return _progress(f"Waiting for updated revision {status.get('updateRevision')} to be ready")
    return _current(f"All replicas scheduled as expected. Replicas: {have}")


def _daemonset(obj: dict[str, Any], status: dict[str, Any], conditions: Conditions, now: datetime) -> Status:
    meta = obj.get("metadata") or {}
    if meta.get("generation") is None or status.get("observedGeneration") is None:
        return _progress("DaemonSet generation not yet observed")
    desired = _int(status.get("desiredNumberScheduled"))
    for field, label in (
        ("currentNumberScheduled", "Current"),
        ("updatedNumberScheduled", "Updated"),
        ("numberAvailable", "Available"),
        ("numberReady", "Ready"),
    ):
        value = _int(status.get(field))
        if desired > value:
            return _progress(f"{label}: {value}/{desired}")
    return _current(f"All replicas scheduled as expected. Replicas: {desired}")


def _job(obj: dict[str, Any], status: dict[str, Any], conditions: Conditions, now: datetime) -> Status:
    complete = conditions.get("Complete")
    if complete and complete.get("status") == "True":
        return _current("Job Completed")
    failed = conditions.get("Failed")
    if failed and failed.get("status") == "True":
        return _failed(f"Job Failed: {failed.get('message', '')}".rstrip(": "))
    if not status.get("startTime"):
        return _progress("Job not started")
    return _current(
        f"Job in progress. success: {_int(status.get('succeeded'))}, "
        f"active: {_int(status.get('active'))}, failed: {_int(status.get('failed'))}"
    )


def job_completion_status(obj: dict[str, Any]) -> Status:
    """A Job as Flux's Job reader sees it when a wait is for Jobs (Helm's WaitWithJobs): Current
    once complete (or suspended), Failed once failed, in progress until then."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    assert isinstance(spec, dict) and isinstance(status, dict)
    if spec.get("suspend") is True:
        return _current("Job is suspended")
    parallelism = _int(spec.get("parallelism"), 1)
    completions = _int(spec.get("completions"), parallelism)
    succeeded, failed = _int(status.get("succeeded")), _int(status.get("failed"))
    conditions = _conditions(obj)
    if (conditions.get("Complete") or {}).get("status") == "True":
        return _current(f"Job Completed. succeeded: {succeeded}/{completions}")
    if (conditions.get("Failed") or {}).get("status") == "True":
        return _failed(f"Job Failed. failed: {failed}/{completions}")
    if not status.get("startTime"):
        return _progress(f"Job not started. active: 0/{parallelism}")
    return _progress(
        f"Job in progress. success:{succeeded}, active: {_int(status.get('active'))}, failed: {failed}"
    )


def _pvc(obj: dict[str, Any], status: dict[str, Any], conditions: Conditions, now: datetime) -> Status:
    if status.get("phase") == "Bound":
        return _current("PVC is Bound")
    return _progress("PVC is not Bound")


def _service(obj: dict[str, Any], status: dict[str, Any], conditions: Conditions, now: datetime) -> Status:
    spec = obj.get("spec") or {}
    if spec.get("type") == "LoadBalancer" and not spec.get("clusterIP"):
        return _progress("ClusterIP not set")
    return _current("Service is ready")


def _pod(obj: dict[str, Any], status: dict[str, Any], conditions: Conditions, now: datetime) -> Status:
    phase = status.get("phase")
    if phase == "Succeeded":
        return _current("Pod has completed successfully")
    if phase == "Failed":
        return _current("Pod has completed, but not successfully")
    ready = conditions.get("Ready")
    if phase == "Running" and ready and ready.get("status") == "True":
        return _current("Pod is Ready")
    for container in status.get("containerStatuses") or []:
        waiting = ((container or {}).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            return _failed(f"Pod container {container.get('name')} is in CrashLoopBackOff")
    scheduled = conditions.get("PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        since = _parse_time(scheduled.get("lastTransitionTime"))
        if since is not None and (now - since).total_seconds() > POD_UNSCHEDULABLE_GRACE:
            return _failed(f"Pod could not be scheduled: {scheduled.get('message', '')}".rstrip(": "))
        return _progress("Pod has not been scheduled")
    if phase == "Running":
        return _progress("Pod is running but is not Ready")
    return _progress(f"Pod phase is {phase or 'unknown'}")


def _crd(obj: dict[str, Any], status: dict[str, Any], conditions: Conditions, now: datetime) -> Status:
    names = conditions.get("NamesAccepted")
    if names and names.get("status") == "False":
        return _failed(f"CRD names not accepted: {names.get('message', '')}".rstrip(": "))
    established = conditions.get("Established")
    if established and established.get("status") == "True":
        return _current("CRD is established")
    if established and established.get("status") == "False" and established.get("reason") != "Installing":
        return _failed(f"CRD is not established: {established.get('message', '')}".rstrip(": "))
    return _progress("Install in progress")


def _always_current(
    obj: dict[str, Any], status: dict[str, Any], conditions: Conditions, now: datetime
) -> Status:
    return _current()


_CORE_RULES = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("batch", "Job"): _job,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Service"): _service,
    ("", "Pod"): _pod,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
    ("policy", "PodDisruptionBudget"): _always_current,
    ("", "Secret"): _always_current,
    ("", "ConfigMap"): _always_current,
    ("batch", "CronJob"): _always_current,
}
