"""How a failed connection to an upstream (registry, chart repository) reads in a condition message.

aiohttp reports a refused connection as "Cannot connect to host h:p ssl:default [Connect call failed
('127.0.0.1', p)]": the cause (refused, unreachable, timed out) is only in the errno. Flux's users read
Go's "dial tcp h:p: connect: connection refused"; this names the cause the same way.
"""

from __future__ import annotations

import os
import socket

import aiohttp


def describe_client_error(exc: aiohttp.ClientError) -> str:
    # TLS failures keep aiohttp's text (it names the certificate problem); name resolution
    # failures carry a negative EAI_* code, not an errno.
    if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(exc, aiohttp.ClientSSLError):
        code = exc.os_error.errno
        if code and code > 0 and not isinstance(exc.os_error, socket.gaierror):
            return f"dial tcp {exc.host}:{exc.port}: connect: {os.strerror(code).lower()}"
    return str(exc) or type(exc).__name__
