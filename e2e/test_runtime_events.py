"""Events POSTed to --events-addr in Flux's JSON, and reconciles that do not wait for a dead endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from e2e.cluster import free_port
from e2e.fixtures.runtime import condition, create_probe, is_ready, status_of, wait_for, wait_probe

pytestmark = pytest.mark.e2e


@pytest.fixture
def event_receiver() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", received
    finally:
        server.shutdown()


def test_events_are_posted_in_flux_format(start_probe, kubectl, namespace, event_receiver) -> None:
    url, received = event_receiver
    start_probe(f"--events-addr={url}")
    create_probe(kubectl, "ok", namespace)
    create_probe(kubectl, "broken", namespace, mode="fail", message="it broke")
    info = wait_for(lambda: [e for e in received if e["involvedObject"]["name"] == "ok"], what="info event")[
        0
    ]
    assert info["severity"] == "info"
    assert info["reason"] == "Reconciled"
    assert info["message"] == "probe reconciled"
    assert info["reportingController"] == "runtime-probe-controller"
    assert info["metadata"] == {"runtime.tide.test/revision": "probe"}
    assert info["involvedObject"]["kind"] == "Probe"
    assert info["involvedObject"]["apiVersion"] == "runtime.tide.test/v1"
    assert info["involvedObject"]["namespace"] == namespace
    assert info["involvedObject"]["uid"]
    error = wait_for(
        lambda: [e for e in received if e["involvedObject"]["name"] == "broken"], what="error event"
    )[0]
    assert error["severity"] == "error"
    assert error["reason"] == "ProbeFailed"
    assert error["message"] == "it broke"


def test_dead_events_endpoint_does_not_block_reconciles(start_probe, kubectl, namespace) -> None:
    start_probe(f"--events-addr=http://127.0.0.1:{free_port()}/")
    create_probe(kubectl, "p", namespace, interval="1s")
    obj = wait_probe(kubectl, "p", namespace, is_ready)
    count = status_of(obj)["reconcileCount"]
    obj = wait_probe(
        kubectl,
        "p",
        namespace,
        lambda o: status_of(o).get("reconcileCount", 0) >= count + 3,
        what="reconciles keep flowing",
    )
    assert condition(obj, "Ready")["status"] == "True"  # type: ignore[index]
