"""Flux event JSON in: validation, metadata clean-up, and the de-duplication window."""

from __future__ import annotations

import json

import pytest

from tide.controllers.notification.events import (
    DedupWindow,
    InvalidEvent,
    clean_metadata,
    dedup_key,
    parse_event,
    parse_listen_address,
)


def body(**overrides: object) -> bytes:
    raw: dict[str, object] = {
        "involvedObject": {
            "kind": "GitRepository",
            "namespace": "flux-system",
            "name": "podinfo",
            "uid": "u-1",
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "resourceVersion": "7",
        },
        "severity": "info",
        "timestamp": "2026-11-26T04:00:00Z",
        "message": "stored artifact for commit 'x'",
        "reason": "NewArtifact",
        "metadata": {
            "source.toolkit.fluxcd.io/revision": "main@sha1:abc",
            "source.toolkit.fluxcd.io/digest": "sha256:ff",
            "source.toolkit.fluxcd.io/checksum": "c",
            "event.toolkit.fluxcd.io/token": "t",
            "kustomize.toolkit.fluxcd.io/revision": "foreign",
        },
        "reportingController": "source-controller",
        "reportingInstance": "host-1",
    }
    raw.update(overrides)
    return json.dumps(raw).encode()


def test_parse_round_trips_flux_fields():
    e = parse_event(body())
    assert e.involved_object.kind == "GitRepository"
    assert e.involved_object.group == "source.toolkit.fluxcd.io"
    out = e.to_json()
    assert out["reportingController"] == "source-controller"
    assert out["involvedObject"]["resourceVersion"] == "7"
    assert json.loads(body())["metadata"] == out["metadata"]


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b"{}",
        body(severity="fatal"),
        body(involvedObject={"kind": "GitRepository", "name": "x"}),
        body(metadata={"a": 1}),
        body(message=None),
        body(message="x" * 39001),
        body(reportingController=""),
        b"\xff\xfe",
    ],
)
def test_malformed_events_are_rejected(raw: bytes):
    with pytest.raises(InvalidEvent):
        parse_event(raw)


def test_clean_metadata_keeps_group_and_event_keys():
    e = clean_metadata(parse_event(body()))
    assert e.metadata == {"revision": "main@sha1:abc", "token": "t"}


def test_dedup_key_depends_on_identity_message_and_revision():
    base = clean_metadata(parse_event(body()))
    assert dedup_key(base) == dedup_key(clean_metadata(parse_event(body(timestamp="2027-01-01T00:00:00Z"))))
    assert dedup_key(base) != dedup_key(clean_metadata(parse_event(body(message="other"))))
    other_rev = body(metadata={"source.toolkit.fluxcd.io/revision": "main@sha1:def"})
    assert dedup_key(base) != dedup_key(clean_metadata(parse_event(other_rev)))
    other_obj = body(
        involvedObject={
            "kind": "GitRepository",
            "namespace": "flux-system",
            "name": "b",
            "apiVersion": "source.toolkit.fluxcd.io/v1",
        }
    )
    assert dedup_key(base) != dedup_key(clean_metadata(parse_event(other_obj)))


def test_window_admits_once_per_interval():
    now = [100.0]
    window = DedupWindow(300, clock=lambda: now[0])
    assert window.admit("k")
    assert not window.admit("k")
    assert window.admit("other")
    now[0] += 299
    assert not window.admit("k")
    now[0] += 2
    assert window.admit("k")


def test_window_zero_interval_admits_everything():
    window = DedupWindow(0)
    assert window.admit("k") and window.admit("k")


def test_window_bounded():
    now = [0.0]
    window = DedupWindow(10, clock=lambda: now[0], max_keys=3)
    for key in "abcd":
        assert window.admit(key)
    assert len(window._seen) <= 3


def test_listen_addresses():
    assert parse_listen_address(":9090", 1) == ("0.0.0.0", 9090)
    assert parse_listen_address("127.0.0.1:0", 1) == ("127.0.0.1", 0)
    assert parse_listen_address("http://localhost:9292/", 1) == ("localhost", 9292)
    assert parse_listen_address("[::1]:80", 1) == ("::1", 80)
