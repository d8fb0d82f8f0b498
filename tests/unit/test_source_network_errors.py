"""A failed connection to a registry or chart repository names its cause as Flux's users read it."""

from __future__ import annotations

import errno
import os

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from tide.controllers.source.network_errors import describe_client_error


def connector_error(code: int) -> aiohttp.ClientConnectorError:
    key = ConnectionKey("registry.example", 5000, False, True, None, None, None)
    # asyncio's connect replaces strerror with "Connect call failed (...)": only the errno is left.
    return aiohttp.ClientConnectorError(key, OSError(code, "Connect call failed ('10.0.0.1', 5000)"))


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ECONNREFUSED, "connection refused"),
        (errno.EHOSTUNREACH, "no route to host"),
        (errno.ETIMEDOUT, "connection timed out"),
    ],
)
def test_connect_failures_name_the_cause(code: int, cause: str) -> None:
    assert os.strerror(code).lower() == cause
    assert describe_client_error(connector_error(code)) == f"dial tcp registry.example:5000: connect: {cause}"


def test_other_client_errors_keep_their_text() -> None:
    assert describe_client_error(aiohttp.ServerDisconnectedError()) == "Server disconnected"
    assert describe_client_error(aiohttp.ClientPayloadError()) == "ClientPayloadError"
