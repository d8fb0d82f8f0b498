"""How a failed connection to an upstream (registry, chart repository) reads in a condition message.

aiohttp reports a refused connection as "Cannot connect to host h:p ssl:default [Connect call failed
('127.0.0.1', p)]": the cause (refused, unreachable, timed out) is only in the errno. Flux's users read
Go's "dial tcp h:p: connect: connection refused"; this names the cause the same way.
"""

from __future__ import annotations

import os

import aiohttp


def describe_client_error(exc: aiohttp.ClientError) -> str:
    if type(exc) in (aiohttp.ClientConnectorError, aiohttp.ClientProxyConnectionError):
        errno = exc.os_error.errno  # type: ignore[attr-defined]
        if errno:
            return f"dial tcp {exc.host}:{exc.port}: connect: {os.strerror(errno).lower()}"  # type: ignore[attr-defined]
    return str(exc) or type(exc).__name__
