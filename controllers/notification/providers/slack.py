"""slack (incoming webhook or chat.postMessage with a bot token) and the services that speak its
payload: rocket, mattermost, and discord (through its /slack-compatible endpoint)."""

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

FLUX_ICON = "https://avatars.githubusercontent.com/u/52158677"


def slack_payload(cfg: ProviderConfig, event: Event) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "channel": cfg.channel,
        "username": cfg.username or event.reporting_controller,
        "icon_url": FLUX_ICON,
        "icon_emoji": "",
        "attachments": [
            {
                "color": "danger" if event.severity == "error" else "good",
                "author_name": object_title(event),
                "text": event.message,
                "mrkdwn_in": ["text"],
                "fields": [{"title": k, "value": v, "short": False} for k, v in sorted_metadata(event)],
            }
        ],
    }
    return payload


def build_slack(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    url = require_url(cfg.address, cfg.type)
    headers = {"Authorization": f"Bearer {cfg.token}"} if cfg.token else {}
    headers.update(cfg.headers)
    request = json_request(url, slack_payload(cfg, event), headers)
    if url.startswith("https://slack.com/api/chat.postMessage"):
        request.expect = "json-ok"
    return [request]


def build_rocket(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    url = require_url(cfg.address, cfg.type)
    return [json_request(url, slack_payload(cfg, event), dict(cfg.headers))]


build_mattermost = build_rocket


def build_discord(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    url = require_url(cfg.address, cfg.type).rstrip("/")
    if not url.endswith("/slack"):
        url += "/slack"
    return [json_request(url, slack_payload(cfg, event), dict(cfg.headers))]
