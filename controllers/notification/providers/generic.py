"""generic: the event JSON as Flux sends it; generic-hmac: the same, signed with the token."""

from __future__ import annotations

import hashlib
import hmac

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers.base import (
    OutgoingRequest,
    ProviderConfig,
    ProviderConfigError,
    basic_auth_header,
    json_request,
    require_url,
)


def _headers(cfg: ProviderConfig, event: Event) -> dict[str, str]:
    headers = {"gotk-component": event.reporting_controller}
    if cfg.username and cfg.password:
        headers["Authorization"] = basic_auth_header(cfg.username, cfg.password)
    headers.update(cfg.headers)
    return headers


def build_generic(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    url = require_url(cfg.address, cfg.type)
    return [json_request(url, event.to_json(), _headers(cfg, event))]


def hmac_signature(key: bytes, body: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}=" + hmac.new(key, body, getattr(hashlib, algorithm)).hexdigest()


def build_generic_hmac(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    if not cfg.token:
        raise ProviderConfigError("generic-hmac requires a token in the Provider's secretRef")
    request = build_generic(cfg, event)[0]
    request.headers["X-Signature"] = hmac_signature(cfg.token.encode(), request.body)
    return [request]
