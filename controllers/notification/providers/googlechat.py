"""googlechat: a card with the message and the metadata as key/value widgets."""

from __future__ import annotations

from typing import Any

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers.base import (
    OutgoingRequest,
    ProviderConfig,
    json_request,
    object_title,
    require_url,
    sorted_metadata,
)


def googlechat_payload(event: Event) -> dict[str, Any]:
    sections: list[dict[str, Any]] = [{"widgets": [{"textParagraph": {"text": event.message}}]}]
    if event.metadata:
        sections.append(
            {"widgets": [{"keyValue": {"topLabel": k, "content": v}} for k, v in sorted_metadata(event)]}
        )
    return {
        "cards": [
            {
                "header": {
                    "title": object_title(event),
                    "subtitle": f"{event.severity}: {event.reason}",
                },
                "sections": sections,
            }
        ]
    }


def build_googlechat(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    url = require_url(cfg.address, cfg.type)
    return [json_request(url, googlechat_payload(event), dict(cfg.headers))]
