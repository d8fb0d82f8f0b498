"""Kubernetes Events: the same reason and message on the same object bumps one Event's count;
Flux's event JSON for the notification controller."""

from tide.shared.runtime.events import (
    Event,
    EventDeduplicator,
    EventRecorder,
    ObjectReference,
    flux_event_payload,
    qualify_metadata,
)

REF = ObjectReference("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "apps", "flux-system", "uid-1", "42")


def test_repeat_of_reason_and_message_finds_the_recorded_event() -> None:
    dedup = EventDeduplicator()
    first = Event(REF, "Warning", "BuildFailed", "boom")
    assert dedup.lookup(first) is None
    dedup.remember(first, "apps.1", "flux-system", 1)
    again = Event(REF, "Warning", "BuildFailed", "boom")
    assert dedup.lookup(again) == ("apps.1", "flux-system", 1)
    assert dedup.lookup(Event(REF, "Warning", "BuildFailed", "other message")) is None
    assert dedup.lookup(Event(REF, "Normal", "BuildFailed", "boom")) is None
    other_object = ObjectReference(REF.api_version, REF.kind, "other", "flux-system", "uid-2")
    assert dedup.lookup(Event(other_object, "Warning", "BuildFailed", "boom")) is None


def test_dedup_cache_is_bounded() -> None:
    dedup = EventDeduplicator(size=3)
    for i in range(5):
        dedup.remember(Event(REF, "Normal", "R", str(i)), f"e{i}", "ns", 1)
    assert dedup.lookup(Event(REF, "Normal", "R", "0")) is None
    assert dedup.lookup(Event(REF, "Normal", "R", "4")) is not None


def test_flux_event_payload() -> None:
    event = Event(
        REF, "Warning", "BuildFailed", "boom", qualify_metadata(REF.group, {"revision": "main@sha1:abc"})
    )
    payload = flux_event_payload(event, "kustomize-controller", "pod-1")
    assert payload["severity"] == "error"
    assert payload["involvedObject"] == {
        "kind": "Kustomization",
        "namespace": "flux-system",
        "name": "apps",
        "uid": "uid-1",
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "resourceVersion": "42",
    }
    assert payload["metadata"] == {"kustomize.toolkit.fluxcd.io/revision": "main@sha1:abc"}
    assert payload["reportingController"] == "kustomize-controller"
    assert payload["reportingInstance"] == "pod-1"
    assert payload["timestamp"].endswith("Z")
    assert flux_event_payload(Event(REF, "Normal", "R", "m"), "c", "i")["severity"] == "info"


def test_long_messages_are_truncated_for_the_notification_controller() -> None:
    payload = flux_event_payload(Event(REF, "Normal", "R", "x" * 50000), "c", "i")
    assert len(payload["message"]) == 39000


def test_metadata_keys_with_a_prefix_are_kept() -> None:
    assert qualify_metadata("source.toolkit.fluxcd.io", {"a/b": "1", "revision": "2"}) == {
        "a/b": "1",
        "source.toolkit.fluxcd.io/revision": "2",
    }


async def test_trace_events_are_kubernetes_events_only() -> None:
    recorder = EventRecorder(None, "c", events_addr="http://127.0.0.1:1/")
    obj = {"apiVersion": "a.io/v1", "kind": "K", "metadata": {"name": "n", "namespace": "ns"}}
    recorder.record(obj, "Trace", "Progressing", "step")
    recorder.record(obj, "Warning", "Failed", "boom")
    assert recorder._kube_queue.qsize() == 2
    assert recorder._post_queue.qsize() == 1
    assert recorder._kube_queue.get_nowait().type == "Normal"


async def test_recording_never_blocks_when_the_queues_are_full() -> None:
    recorder = EventRecorder(None, "c", events_addr="http://127.0.0.1:1/", queue_size=2)
    obj = {"apiVersion": "a.io/v1", "kind": "K", "metadata": {"name": "n", "namespace": "ns"}}
    for i in range(10):
        recorder.record(obj, "Normal", "R", str(i))
    assert recorder.dropped == 16
