"""matrix: an m.text message PUT into the room named by the Provider's channel."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

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


def matrix_body(event: Event) -> str:
    emoji = "🚨" if event.severity == "error" else "💫"
    lines = [f"{emoji} {object_title(event)}", event.message]
    lines += [f"{k}: {v}" for k, v in sorted_metadata(event)]
    return "\n".join(lines)


def transaction_id(event: Event) -> str:
    """Idempotent per event, so a retried PUT is not shown twice."""
    return hashlib.sha1(json.dumps(event.to_json(), sort_keys=True).encode()).hexdigest()


def build_matrix(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    if not cfg.token or not cfg.channel:
        raise ProviderConfigError("matrix requires an access token (secretRef) and a room id (channel)")
    base = require_url(cfg.address, cfg.type).rstrip("/")
    url = (
        f"{base}/_matrix/client/r0/rooms/{quote(cfg.channel, safe='')}"
        f"/send/m.room.message/{transaction_id(event)}"
    )
    headers = {"Authorization": f"Bearer {cfg.token}", **cfg.headers}
    return [json_request(url, {"msgtype": "m.text", "body": matrix_body(event)}, headers, method="PUT")]
