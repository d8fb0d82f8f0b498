"""webex, lark and datadog: one message or event per notification."""

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
    sorted_metadata,
)


def _markdown(event: Event) -> str:
    lines = [f"**{object_title(event)}**", "", event.message]
    if event.metadata:
        lines.append("")
        lines += [f"- **{k}**: {v}" for k, v in sorted_metadata(event)]
    return "\n".join(lines)


def build_webex(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    """Webex messages API: the room is the channel, the bot token authorises."""
    if not cfg.token or not cfg.channel:
        raise ProviderConfigError("webex requires a bot token (secretRef) and a room id (channel)")
    url = require_url(cfg.address or "https://webexapis.com/v1/messages", cfg.type)
    payload = {"roomId": cfg.channel, "markdown": _markdown(event)}
    return [json_request(url, payload, {"Authorization": f"Bearer {cfg.token}", **cfg.headers})]


def lark_payload(event: Event) -> dict[str, Any]:
    text = event.message
    if event.metadata:
        text += "\n\n" + "\n".join(f"**{k}**: {v}" for k, v in sorted_metadata(event))
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "title": {"tag": "plain_text", "content": f"💫 {object_title(event)}"},
                "template": "red" if event.severity == "error" else "turquoise",
            },
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text}}],
        },
    }


def build_lark(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    url = require_url(cfg.address, cfg.type)
    return [json_request(url, lark_payload(event), dict(cfg.headers))]


def datadog_payload(event: Event) -> dict[str, Any]:
    obj = event.involved_object
    tags = [
        "source:fluxcd",
        f"flux_reporting_controller:{event.reporting_controller}",
        f"flux_{obj.kind.lower()}:{obj.name}",
        f"kube_namespace:{obj.namespace}",
        f"flux_reason:{event.reason}",
    ]
    tags += [f"flux_{k.lower()}:{v}" for k, v in sorted_metadata(event)]
    return {
        "title": object_title(event),
        "text": event.message,
        "tags": tags,
        "alert_type": "error" if event.severity == "error" else "info",
        "source_type_name": "fluxcd",
    }


def build_datadog(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    """Datadog events API; address is the site API base (default https://api.datadoghq.com)."""
    if not cfg.token:
        raise ProviderConfigError("datadog requires an API key as token in the Provider's secretRef")
    base = require_url(cfg.address or "https://api.datadoghq.com", cfg.type).rstrip("/")
    url = base if base.endswith("/api/v1/events") else f"{base}/api/v1/events"
    return [json_request(url, datadog_payload(event), {"DD-API-KEY": cfg.token, **cfg.headers})]
