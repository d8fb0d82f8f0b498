"""Values from a Provider's Secrets (a Slack webhook address is a credential) never reach a log
line, an Event or a status."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from tide.controllers.notification.dispatch import Dispatcher, HttpSender, SendError
from tide.controllers.notification.events import Event, InvolvedObject
from tide.controllers.notification.providers import OutgoingRequest, ProviderConfig
from tide.controllers.notification.providers.base import ProviderConfigError, require_url
from tide.controllers.notification.providers.config import resolve_provider
from tide.shared.runtime.redaction import MASK, redact

WEBHOOK = "https://hooks.slack.example/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def provider(type_: str = "slack") -> dict[str, Any]:
    return {
        "metadata": {"name": "slack", "namespace": "apps"},
        "spec": {"type": type_, "secretRef": {"name": "s"}},
    }


def secret(**values: str) -> dict[str, Any]:
    return {"data": {key: b64(value) for key, value in values.items()}}


def test_redact_masks_values_and_their_url_forms() -> None:
    assert redact(f"POST {WEBHOOK}: 404", [WEBHOOK]) == f"POST {MASK}: 404"
    assert redact("token=a%20b%2Fc", ["a b/c"]) == f"token={MASK}"
    assert redact("x", ["", "ab"]) == "x"  # too short to mask usefully


async def test_failed_send_does_not_log_the_secret_address(caplog: pytest.LogCaptureFixture) -> None:
    """The attack: the Provider's address from its Secret (a Slack webhook) was logged on failure."""
    cfg = resolve_provider(provider(), secret(address=WEBHOOK, token="xoxb-123456"))

    async def refused(c: ProviderConfig, req: OutgoingRequest) -> None:
        raise SendError(f"{req.method} {req.url}: 404 no_service (token xoxb-123456)", retryable=False)

    event = Event(
        InvolvedObject("GitRepository", "repo", "apps"), "error", "", "failed", "R", "source-controller"
    )
    dispatcher = Dispatcher(sender=refused, base_delay=0.01)
    with caplog.at_level(logging.INFO):
        assert not await dispatcher.deliver(cfg, event)
    await dispatcher.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "failed to send notification" in logged
    assert "XXXXXXXXXXXX" not in logged and "xoxb-123456" not in logged


async def test_unreachable_secret_address_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    cfg = resolve_provider(provider("generic"), secret(address="http://127.0.0.1:9/hook/s3cr3t-path"))
    sender = HttpSender()
    dispatcher = Dispatcher(sender=sender, max_attempts=1)
    event = Event(InvolvedObject("GitRepository", "repo", "apps"), "info", "", "m", "R", "source-controller")
    with caplog.at_level(logging.INFO):
        assert not await dispatcher.deliver(cfg, event)
    await sender.close()
    assert "s3cr3t-path" not in "\n".join(r.getMessage() for r in caplog.records)


def test_bad_secret_values_are_masked_in_config_errors() -> None:
    """An invalid address or headers map from the Secret ends up in the Provider's status."""
    with pytest.raises(ProviderConfigError) as bad_headers:
        resolve_provider(provider(), secret(headers="Authorization: Bearer s3cr3t-token\n- [x"))
    assert "s3cr3t-token" not in str(bad_headers.value)
    cfg = resolve_provider(provider(), secret(address="not-a-url-s3cr3t"))
    with pytest.raises(ProviderConfigError) as bad_address:
        require_url(cfg.address, "slack")
    assert "not-a-url-s3cr3t" not in redact(str(bad_address.value), cfg.secret_values)


def test_secret_values_cover_headers_and_proxy() -> None:
    cfg = resolve_provider(
        provider(),
        secret(address=WEBHOOK, headers="X-Api-Key: k3y-value\n"),
        proxy_secret=secret(address="http://proxy:3128", password="pr0xy-pass"),
    )
    assert {WEBHOOK, "k3y-value", "pr0xy-pass", "http://proxy:3128"} <= set(cfg.secret_values)
