"""Provider delivery: retries with backoff, no retry for client errors, a failing provider does
not hold up the others, failures counted."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from tide.controllers.notification.dispatch import Dispatcher, SendError
from tide.controllers.notification.events import Event, InvolvedObject
from tide.controllers.notification.providers import OutgoingRequest, ProviderConfig


def event() -> Event:
    return Event(InvolvedObject("GitRepository", "repo", "ns"), "info", "", "m", "R", "source-controller")


def cfg(name: str) -> ProviderConfig:
    return ProviderConfig(
        type="generic", address=f"http://x/{name}", name=name, namespace="retry-test", token="t0k"
    )


def metric(name: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "tide_notification_requests_total",
        {"namespace": "retry-test", "provider": name, "type": "generic", "result": result},
    )
    return value or 0.0


async def test_retries_then_succeeds_and_slow_provider_does_not_block():
    calls: dict[str, int] = {}
    delivered: list[str] = []
    release = asyncio.Event()

    async def sender(c: ProviderConfig, req: OutgoingRequest) -> None:
        calls[c.name] = calls.get(c.name, 0) + 1
        if c.name == "flaky" and calls[c.name] < 3:
            raise SendError("503 t0k", retryable=True)
        if c.name == "stuck":
            await release.wait()
        delivered.append(c.name)

    d = Dispatcher(sender=sender, base_delay=0.01)
    d.submit(cfg("stuck"), event())
    d.submit(cfg("flaky"), event())
    d.submit(cfg("fine"), event())
    for _ in range(100):
        if {"flaky", "fine"} <= set(delivered):
            break
        await asyncio.sleep(0.01)
    assert {"flaky", "fine"} <= set(delivered) and "stuck" not in delivered
    assert calls["flaky"] == 3
    release.set()
    await d.drain(5)
    await d.close()
    assert metric("flaky", "success") == 1


async def test_client_errors_are_not_retried_and_counted():
    calls = 0

    async def sender(c: ProviderConfig, req: OutgoingRequest) -> None:
        nonlocal calls
        calls += 1
        raise SendError("400 bad request", retryable=False)

    d = Dispatcher(sender=sender, base_delay=0.01)
    before = metric("bad", "failed")
    assert not await d.deliver(cfg("bad"), event())
    assert calls == 1
    assert metric("bad", "failed") == before + 1


async def test_gives_up_after_max_attempts():
    calls = 0

    async def sender(c: ProviderConfig, req: OutgoingRequest) -> None:
        nonlocal calls
        calls += 1
        raise SendError("connection refused", retryable=True)

    d = Dispatcher(sender=sender, base_delay=0.001, max_attempts=3)
    assert not await d.deliver(cfg("down"), event())
    assert calls == 3


async def test_invalid_provider_config_counted_not_raised():
    d = Dispatcher()
    bad = ProviderConfig(type="generic", address="not a url", name="invalid", namespace="retry-test")
    assert not await d.deliver(bad, event())
    assert metric("invalid", "invalid") == 1


async def test_full_queue_drops():
    async def sender(c: ProviderConfig, req: OutgoingRequest) -> None:
        await asyncio.sleep(10)

    d = Dispatcher(sender=sender, max_queue=1)
    assert d.submit(cfg("q"), event())
    await asyncio.sleep(0.05)
    assert d.submit(cfg("q"), event())
    assert not d.submit(cfg("q"), event())
    await d.close()


def test_slack_api_answers_are_checked():
    import pytest

    from tide.controllers.notification.dispatch import check_ok_answer
    from tide.controllers.notification.providers import build_requests

    e = event()
    [api] = build_requests(
        ProviderConfig(
            type="slack", address="https://slack.com/api/chat.postMessage", token="x", channel="c"
        ),
        e,
    )
    assert api.expect == "json-ok"
    [hook] = build_requests(ProviderConfig(type="slack", address="https://hooks.slack.com/services/x"), e)
    assert hook.expect == ""
    check_ok_answer(api, b'{"ok": true}')
    with pytest.raises(SendError) as err:
        check_ok_answer(api, b'{"ok": false, "error": "channel_not_found"}')
    assert "channel_not_found" in str(err.value) and not err.value.retryable
    with pytest.raises(SendError):
        check_ok_answer(api, b"ok")
