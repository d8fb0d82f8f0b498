"""The reconcile loop's Flux semantics against an in-memory API (a small fake, no cluster):
finalizer first, suspend, requestedAt, success/failure/stall outcomes and their requeues, deletion,
and an invalid object stalling alone (CVE-2022-39272)."""

from __future__ import annotations

import argparse
import copy
from typing import Any, ClassVar

import pytest
from pydantic import Field

from tide.shared.api.meta import Duration, KubeObject, ObjectStatus, Spec, parse_duration
from tide.shared.runtime import ReconcileError, Reconciler, Result, StalledError
from tide.shared.runtime.events import EventRecorder
from tide.shared.runtime.kind_controller import KindController, needs_reconcile

NS = "ns"


class WidgetSpec(Spec):
    interval: Duration
    retry_interval: Duration | None = None
    suspend: bool | None = None
    outcome: str = "ok"


class WidgetStatus(ObjectStatus):
    runs: int | None = None


class Widget(KubeObject):
    group: ClassVar[str] = "test.tide.io"
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "Widget"
    plural: ClassVar[str] = "widgets"
    singular: ClassVar[str] = "widget"
    spec: WidgetSpec
    status: WidgetStatus = Field(default_factory=WidgetStatus)

    def retry_interval_seconds(self) -> float | None:
        """Only an explicit retryInterval, like the source kinds (no default to interval)."""
        return parse_duration(self.spec.retry_interval) if self.spec.retry_interval else None


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self.rv = 1

    def add(self, name: str, spec: dict[str, Any], **meta: Any) -> None:
        self.rv += 1
        self.objects[(NS, name)] = {
            "apiVersion": "test.tide.io/v1",
            "kind": "Widget",
            "metadata": {
                "name": name,
                "namespace": NS,
                "generation": 1,
                "resourceVersion": str(self.rv),
                "uid": f"uid-{name}",
                **meta,
            },
            "spec": spec,
        }

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:  # informer
        return self.objects.get((namespace or "", name))

    async def patch_merge(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: dict[str, Any],
        field_manager: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        self.writes.append((name, subresource or "", copy.deepcopy(patch)))
        obj = copy.deepcopy(self.objects[(namespace or "", name)])
        for key, value in (patch.get("metadata") or {}).items():
            if key == "resourceVersion":
                continue
            if value is None:
                obj["metadata"].pop(key, None)
            else:
                obj["metadata"][key] = value
        if "status" in patch:
            status = obj.setdefault("status", {})
            for key, value in patch["status"].items():
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if not obj["metadata"].get("finalizers") and obj["metadata"].get("deletionTimestamp"):
            del self.objects[(namespace or "", name)]
        else:
            self.objects[(namespace or "", name)] = obj
        return obj

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: dict[str, Any],
        field_manager: str,
    ) -> dict[str, Any]:
        assert field_manager == "gotk-widget-controller"
        return await self.patch_merge(api_version, kind, name, namespace, patch, subresource="status")


class WidgetReconciler(Reconciler[Widget]):
    model = Widget
    finalizer = "finalizers.fluxcd.io"

    def __init__(self) -> None:
        self.reconciled: list[str] = []
        self.finalized: list[str] = []

    async def reconcile(self, obj: Widget, ctx: Any) -> Result:
        self.reconciled.append(obj.name)
        obj.status.runs = (obj.status.runs or 0) + 1
        if obj.spec.outcome == "fail":
            raise ReconcileError("Broken", "it broke")
        if obj.spec.outcome == "fail-later":
            raise ReconcileError("Broken", "it broke", requeue_after=42)
        if obj.spec.outcome == "stall":
            raise StalledError("Hopeless", "cannot ever work")
        if obj.spec.outcome == "not-ready":
            ctx.set_condition("Ready", "False", "DependencyNotReady", "waiting for dependency")
            return Result(requeue_after=7)
        ctx.set_condition("Ready", "True", "Done", "all good")
        return Result()

    async def finalize(self, obj: Widget, ctx: Any) -> None:
        self.finalized.append(obj.name)


@pytest.fixture
def setup() -> tuple[FakeKube, WidgetReconciler, KindController]:
    kube = FakeKube()
    reconciler = WidgetReconciler()
    controller = KindController(
        reconciler,
        kube,
        argparse.Namespace(),
        "widget-controller",  # type: ignore[arg-type]
        EventRecorder(None, "widget-controller"),
        jitter_percent=0,
    )
    controller.informer = kube  # type: ignore[assignment]
    return kube, reconciler, controller


def conditions(kube: FakeKube, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in kube.objects[(NS, name)].get("status", {}).get("conditions", [])}


async def test_success_adds_finalizer_first_and_requeues_after_interval(setup) -> None:
    kube, _, controller = setup
    kube.add("w", {"interval": "5m"})
    assert await controller.reconcile_key((NS, "w")) == "requeue_after"
    assert kube.writes[0][1] == "" and kube.writes[0][2]["metadata"]["finalizers"] == ["finalizers.fluxcd.io"]
    obj = kube.objects[(NS, "w")]
    assert obj["status"]["observedGeneration"] == 1
    assert obj["status"]["runs"] == 1
    conds = conditions(kube, "w")
    assert set(conds) == {"Ready"} and conds["Ready"]["reason"] == "Done"
    assert controller.queue.due_at((NS, "w")) is not None
    assert abs(controller.queue.due_at((NS, "w")) - controller.queue.now() - 300) < 1  # type: ignore[operator]


async def test_failure_sets_ready_false_and_backs_off(setup) -> None:
    kube, _, controller = setup
    kube.add("w", {"interval": "5m", "outcome": "fail"})
    assert await controller.reconcile_key((NS, "w")) == "error"
    conds = conditions(kube, "w")
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "Broken"
    assert conds["Reconciling"]["reason"] == "ProgressingWithRetry"
    assert "observedGeneration" not in kube.objects[(NS, "w")]["status"]
    assert controller.queue.backoff.failures((NS, "w")) == 1
    await controller.reconcile_key((NS, "w"))
    assert controller.queue.backoff.failures((NS, "w")) == 2


async def test_failure_with_requeue_after_or_retry_interval_does_not_back_off(setup) -> None:
    kube, _, controller = setup
    kube.add("a", {"interval": "5m", "outcome": "fail-later"})
    kube.add("b", {"interval": "5m", "retryInterval": "30s", "outcome": "fail"})
    await controller.reconcile_key((NS, "a"))
    await controller.reconcile_key((NS, "b"))
    now = controller.queue.now()
    assert abs(controller.queue.due_at((NS, "a")) - now - 42) < 1  # type: ignore[operator]
    assert abs(controller.queue.due_at((NS, "b")) - now - 30) < 1  # type: ignore[operator]
    assert controller.queue.backoff.failures((NS, "a")) == 0


async def test_returning_not_ready_keeps_reconciling_and_observed_generation(setup) -> None:
    kube, _, controller = setup
    kube.add("w", {"interval": "5m", "outcome": "not-ready"})
    assert await controller.reconcile_key((NS, "w")) == "requeue_after"
    conds = conditions(kube, "w")
    assert conds["Ready"]["reason"] == "DependencyNotReady"
    assert conds["Reconciling"]["reason"] == "ProgressingWithRetry"
    assert "observedGeneration" not in kube.objects[(NS, "w")]["status"]
    assert abs(controller.queue.due_at((NS, "w")) - controller.queue.now() - 7) < 1  # type: ignore[operator]


async def test_stalled_is_not_retried(setup) -> None:
    kube, _, controller = setup
    kube.add("w", {"interval": "5m", "outcome": "stall"})
    assert await controller.reconcile_key((NS, "w")) == "error"
    conds = conditions(kube, "w")
    assert conds["Stalled"]["status"] == "True" and conds["Ready"]["reason"] == "Hopeless"
    assert "Reconciling" not in conds
    assert kube.objects[(NS, "w")]["status"]["observedGeneration"] == 1
    assert controller.queue.due_at((NS, "w")) is None and controller.queue.backoff.failures((NS, "w")) == 0


async def test_invalid_object_stalls_alone(setup) -> None:
    kube, reconciler, controller = setup
    kube.add("bad", {"interval": "every hour"})
    kube.add("good", {"interval": "1m"})
    assert await controller.reconcile_key((NS, "bad")) == "error"
    assert await controller.reconcile_key((NS, "good")) == "requeue_after"
    assert reconciler.reconciled == ["good"]
    stalled = conditions(kube, "bad")["Stalled"]
    assert stalled["reason"] == "InvalidObject" and "interval" in stalled["message"]
    assert controller.queue.due_at((NS, "bad")) is None
    writes = len(kube.writes)
    await controller.reconcile_key((NS, "bad"))
    assert len(kube.writes) == writes, "an unchanged invalid object is not patched again"


async def test_suspended_object_is_skipped(setup) -> None:
    kube, reconciler, controller = setup
    kube.add("w", {"interval": "5m", "suspend": True})
    assert await controller.reconcile_key((NS, "w")) == "success"
    assert reconciler.reconciled == []
    assert controller.queue.due_at((NS, "w")) is None


async def test_requested_at_is_recorded(setup) -> None:
    kube, _, controller = setup
    kube.add("w", {"interval": "5m"}, annotations={"reconcile.fluxcd.io/requestedAt": "now-1"})
    await controller.reconcile_key((NS, "w"))
    assert kube.objects[(NS, "w")]["status"]["lastHandledReconcileAt"] == "now-1"


async def test_periodic_reconcile_keeps_ready_transition_and_makes_one_write(setup) -> None:
    kube, _, controller = setup
    kube.add("w", {"interval": "5m"})
    await controller.reconcile_key((NS, "w"))
    before = conditions(kube, "w")["Ready"]["lastTransitionTime"]
    writes = len(kube.writes)
    await controller.reconcile_key((NS, "w"))
    assert conditions(kube, "w")["Ready"]["lastTransitionTime"] == before
    assert len(kube.writes) == writes + 1, "only the final status patch (runs changed)"


async def test_deletion_finalizes_then_removes_finalizer(setup) -> None:
    kube, reconciler, controller = setup
    kube.add("w", {"interval": "5m"})
    await controller.reconcile_key((NS, "w"))
    kube.objects[(NS, "w")]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert await controller.reconcile_key((NS, "w")) == "success"
    assert reconciler.finalized == ["w"]
    assert (NS, "w") not in kube.objects
    assert await controller.reconcile_key((NS, "w")) == "success"  # gone: nothing to do


def test_only_spec_and_request_changes_trigger_a_reconcile() -> None:
    old = {"metadata": {"generation": 1, "resourceVersion": "1"}, "status": {}}
    status_only = {"metadata": {"generation": 1, "resourceVersion": "2"}, "status": {"x": 1}}
    spec = {"metadata": {"generation": 2, "resourceVersion": "3"}}
    requested = {"metadata": {"generation": 1, "annotations": {"reconcile.fluxcd.io/requestedAt": "t"}}}
    deleting = {"metadata": {"generation": 1, "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert not needs_reconcile(old, status_only)
    assert needs_reconcile(old, spec)
    assert needs_reconcile(old, requested)
    assert needs_reconcile(old, deleting)
    assert needs_reconcile(None, old)
