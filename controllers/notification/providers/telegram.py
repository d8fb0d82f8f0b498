"""telegram: Bot API sendMessage to the Provider's channel (chat id), MarkdownV2."""

from __future__ import annotations

import re

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

DEFAULT_API = "https://api.telegram.org"
_SPECIAL = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")


def escape_markdown_v2(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text)


def telegram_text(event: Event) -> str:
    emoji = "🚨" if event.severity == "error" else "💫"
    lines = [f"*{emoji} {escape_markdown_v2(object_title(event))}*", escape_markdown_v2(event.message)]
    lines += [f"• *{escape_markdown_v2(k)}:* {escape_markdown_v2(v)}" for k, v in sorted_metadata(event)]
    return "\n".join(lines)


def build_telegram(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    if not cfg.token or not cfg.channel:
        raise ProviderConfigError("telegram requires a bot token (secretRef) and a channel (chat id)")
    base = require_url(cfg.address or DEFAULT_API, cfg.type).rstrip("/")
    url = f"{base}/bot{cfg.token}/sendMessage"
    payload = {"chat_id": cfg.channel, "text": telegram_text(event), "parse_mode": "MarkdownV2"}
    return [json_request(url, payload, dict(cfg.headers))]
