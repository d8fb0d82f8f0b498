"""alertmanager: one firing alert per event on the v2 API (address ends in /api/v2/alerts)."""

from __future__ import annotations

from typing import Any

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers.base import (
    OutgoingRequest,
    ProviderConfig,
    basic_auth_header,
    json_request,
    require_url,
)


def alertmanager_payload(event: Event) -> list[dict[str, Any]]:
    obj = event.involved_object
    labels = {k: v for k, v in event.metadata.items() if k != "summary"}
    labels.update(
        {
            "alertname": f"Flux{obj.kind}{event.reason}",
            "severity": event.severity,
            "reason": event.reason,
            "kind": obj.kind,
            "name": obj.name,
            "namespace": obj.namespace,
            "reportingcontroller": event.reporting_controller,
        }
    )
    annotations = {"message": event.message}
    if "summary" in event.metadata:
        annotations["summary"] = event.metadata["summary"]
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "status": "firing",
        "generatorURL": "",
    }
    if event.timestamp:
        alert["startsAt"] = event.timestamp
    return [alert]


def auth_headers(cfg: ProviderConfig) -> dict[str, str]:
    headers: dict[str, str] = {}
    if cfg.token:
        headers["Authorization"] = f"Bearer {cfg.token}"
    elif cfg.username and cfg.password:
        headers["Authorization"] = basic_auth_header(cfg.username, cfg.password)
    headers.update(cfg.headers)
    return headers


def build_alertmanager(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    url = require_url(cfg.address, cfg.type)
    return [json_request(url, alertmanager_payload(event), auth_headers(cfg))]
