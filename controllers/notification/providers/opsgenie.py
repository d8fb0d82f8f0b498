"""opsgenie: an alert on the Alert API, authorised with `GenieKey <token>`."""

from __future__ import annotations

from typing import Any

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers.base import (
    OutgoingRequest,
    ProviderConfig,
    ProviderConfigError,
    json_request,
    require_url,
)


def opsgenie_payload(event: Event) -> dict[str, Any]:
    obj = event.involved_object
    details = dict(event.metadata)
    details.update({"severity": event.severity, "reason": event.reason, "namespace": obj.namespace})
    return {
        "message": f"{obj.kind}/{obj.name}",
        "description": event.message,
        "details": details,
        "tags": ["flux", obj.kind.lower()],
        "priority": "P1" if event.severity == "error" else "P5",
    }


def build_opsgenie(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    if not cfg.token:
        raise ProviderConfigError("opsgenie requires an API key as token in the Provider's secretRef")
    url = require_url(cfg.address, cfg.type)
    headers = {"Authorization": f"GenieKey {cfg.token}", **cfg.headers}
    return [json_request(url, opsgenie_payload(event), headers)]
