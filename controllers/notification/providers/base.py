"""What every provider builds: plain HTTP requests from a Provider's settings and an event."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tide.controllers.notification.events import Event


class ProviderConfigError(ValueError):
    """The Provider (or its Secret) cannot produce a request; retrying will not help."""


@dataclass
class ProviderConfig:
    """A Provider resolved with its Secrets (see config.resolve_provider)."""

    type: str
    address: str = ""
    channel: str = ""
    username: str = ""
    password: str = ""
    token: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    proxy: str = ""
    proxy_username: str = ""
    proxy_password: str = ""
    timeout: float = 15.0
    name: str = ""
    namespace: str = ""
    uid: str = ""
    commit_status_expr: str = ""
    commit_status_id: str = ""  # commit_status_expr evaluated for one notification
    secret_values: tuple[str, ...] = ()
    """What came from Secrets (address, credentials, headers): masked in logs, Events, status."""


@dataclass
class OutgoingRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    # Services that answer 200 with an error in the body (Slack's chat.postMessage): "json-ok"
    # means the answer must be a JSON object with `"ok": true`.
    expect: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


def json_request(
    url: str, payload: Any, headers: dict[str, str] | None = None, method: str = "POST"
) -> OutgoingRequest:
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return OutgoingRequest(method=method, url=url, headers=all_headers, body=body)


def require_url(address: str, provider_type: str) -> str:
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProviderConfigError(f"invalid {provider_type} address {address!r}: an http(s) URL is required")
    return address


def object_title(event: Event) -> str:
    """`kind/name.namespace`, the heading Flux's chat notifiers use."""
    obj = event.involved_object
    return f"{obj.kind.lower()}/{obj.name}.{obj.namespace}"


def sorted_metadata(event: Event) -> list[tuple[str, str]]:
    return sorted(event.metadata.items())


def split_camel_case(text: str) -> list[str]:
    return re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^A-Za-z\d]+", text)


def basic_auth_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
