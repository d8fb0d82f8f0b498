"""msteams: an Adaptive Card for Teams workflows, the legacy MessageCard for office.com webhooks."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers.base import (
    OutgoingRequest,
    ProviderConfig,
    json_request,
    object_title,
    require_url,
    sorted_metadata,
)


def message_card(event: Event) -> dict[str, Any]:
    return {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": "FF0000" if event.severity == "error" else "0076D7",
        "summary": object_title(event),
        "sections": [
            {
                "activityTitle": event.message,
                "activitySubtitle": object_title(event),
                "facts": [{"name": k, "value": v} for k, v in sorted_metadata(event)],
            }
        ],
    }


def adaptive_card(event: Event) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": object_title(event),
            "weight": "bolder",
            "size": "medium",
            "color": "attention" if event.severity == "error" else "good",
        },
        {"type": "TextBlock", "text": event.message, "wrap": True},
    ]
    if event.metadata:
        body.append(
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in sorted_metadata(event)]}
        )
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }


def build_msteams(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    url = require_url(cfg.address, cfg.type)
    host = urlsplit(url).hostname or ""
    payload = message_card(event) if host.endswith("webhook.office.com") else adaptive_card(event)
    return [json_request(url, payload, dict(cfg.headers))]
