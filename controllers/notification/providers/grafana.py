"""grafana: an annotation (address ends in /api/annotations) tagged with the object and metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers.alertmanager import auth_headers
from tide.controllers.notification.providers.base import (
    OutgoingRequest,
    ProviderConfig,
    json_request,
    object_title,
    require_url,
    sorted_metadata,
)


def _epoch_ms(timestamp: str) -> int | None:
    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def grafana_payload(event: Event) -> dict[str, Any]:
    obj = event.involved_object
    tags = [
        "flux",
        event.reporting_controller,
        f"kind: {obj.kind}",
        f"name: {obj.name}",
        f"namespace: {obj.namespace}",
        f"severity: {event.severity}",
    ]
    tags += [f"{k}: {v}" for k, v in sorted_metadata(event)]
    payload: dict[str, Any] = {"text": f"{object_title(event)}: {event.message}", "tags": tags}
    when = _epoch_ms(event.timestamp)
    if when is not None:
        payload["time"] = when
    return payload


def build_grafana(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    url = require_url(cfg.address, cfg.type)
    return [json_request(url, grafana_payload(event), auth_headers(cfg))]
