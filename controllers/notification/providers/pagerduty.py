"""pagerduty: Events API v2. Errors trigger an incident, info resolves it and records a change.
The routing key is the Provider's channel."""

from __future__ import annotations

from typing import Any

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers.base import (
    OutgoingRequest,
    ProviderConfig,
    ProviderConfigError,
    json_request,
    object_title,
    require_url,
)

DEFAULT_API = "https://events.pagerduty.com"


def dedup_key(event: Event) -> str:
    obj = event.involved_object
    return f"{obj.kind}/{obj.namespace}/{obj.name}"


def alert_event(routing_key: str, event: Event) -> dict[str, Any]:
    obj = event.involved_object
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger" if event.severity == "error" else "resolve",
        "dedup_key": dedup_key(event),
    }
    if event.severity == "error":
        body["payload"] = {
            "summary": f"{object_title(event)}: {event.message}"[:1024],
            "source": event.reporting_controller,
            "severity": "error",
            "timestamp": event.timestamp or None,
            "component": obj.name,
            "group": obj.kind,
            "custom_details": dict(event.metadata),
        }
    return body


def change_event(routing_key: str, event: Event) -> dict[str, Any]:
    return {
        "routing_key": routing_key,
        "payload": {
            "summary": f"{object_title(event)}: {event.message}"[:1024],
            "source": event.reporting_controller,
            "timestamp": event.timestamp or None,
            "custom_details": dict(event.metadata),
        },
    }


def build_pagerduty(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    if not cfg.channel:
        raise ProviderConfigError("pagerduty requires the integration routing key as channel")
    base = require_url(cfg.address or DEFAULT_API, cfg.type).rstrip("/")
    requests = [json_request(f"{base}/v2/enqueue", alert_event(cfg.channel, event), dict(cfg.headers))]
    if event.severity == "info":
        requests.append(
            json_request(f"{base}/v2/change/enqueue", change_event(cfg.channel, event), dict(cfg.headers))
        )
    return requests
