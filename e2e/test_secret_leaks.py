"""A Provider's address from its Secret is a credential (a Slack webhook URL): a failed send, a
bad address, are reported without it. The session-wide scan (e2e/fixtures/leaks.py) then checks
every log line, Event and status of the run for every Secret value the tests created."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from e2e.cluster import free_port
from e2e.fixtures.notification import NotificationEndpoints
from e2e.test_notification_providers import kustomization_event, post_event

pytestmark = pytest.mark.e2e


def notification_objects(namespace: str, unreachable: str, malformed: str) -> list[dict[str, Any]]:
    api = "notification.toolkit.fluxcd.io/v1beta3"
    sources = [{"kind": "Kustomization", "name": "*"}]
    objs: list[dict[str, Any]] = []
    for name, address in (("unreachable", unreachable), ("malformed", malformed)):
        objs += [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
             "stringData": {"address": address}},
            {"apiVersion": api, "kind": "Provider", "metadata": {"name": name, "namespace": namespace},
             "spec": {"type": "slack", "timeout": "2s", "secretRef": {"name": name}}},
            {"apiVersion": api, "kind": "Alert", "metadata": {"name": name, "namespace": namespace},
             "spec": {"providerRef": {"name": name}, "eventSources": sources}},
        ]  # fmt: skip
    return objs


async def test_failed_notifications_do_not_reveal_the_secret_address(
    kubectl: Any, namespace: str, notification_controller: Any
) -> None:
    webhook_secret = uuid.uuid4().hex
    unreachable = f"http://127.0.0.1:{free_port()}/services/T0/B0/{webhook_secret}"
    malformed = f"hooks.slack.example/services/{webhook_secret}-bad"
    endpoints: NotificationEndpoints = notification_controller()
    items = notification_objects(namespace, unreachable, malformed)
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    def provider_warning() -> dict[str, Any] | None:
        """Provider has no status in v1beta3: its errors are Warning events."""
        events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
        return next(
            (e for e in events if e["involvedObject"]["name"] == "malformed" and e.get("type") == "Warning"),
            None,
        )

    deadline = time.monotonic() + 30
    while not (warning := provider_warning()):
        assert time.monotonic() < deadline, "the malformed Provider was not reported"
        await asyncio.sleep(0.3)
    assert warning["reason"] == "ValidationFailed" and "address" in warning["message"]
    assert webhook_secret not in warning["message"]

    await asyncio.sleep(2)  # Alerts reach the controller's watch cache
    assert await post_event(endpoints, kustomization_event(namespace, "Applied revision: main")) == 202
    failed = f"failed to send notification via {namespace}/unreachable"
    deadline = time.monotonic() + 60
    while failed not in endpoints.process.log():
        assert time.monotonic() < deadline, f"no failed send logged:\n{endpoints.process.log()[-3000:]}"
        await asyncio.sleep(0.3)
    log = endpoints.process.log()
    assert webhook_secret not in log, "the Secret's address was logged"
