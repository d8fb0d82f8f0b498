"""The artifact server serves only files under --storage-path: no `..` (raw or encoded), no
symlink out of the storage, no artifact still being written (.tmp-*)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from tide.controllers.source.server import make_app


async def raw_get(server: TestServer, path: str) -> int:
    """The status of a GET sent byte for byte (a client library would normalise the path)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


@pytest.fixture
async def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    storage = tmp_path / "storage"
    (storage / "gitrepository" / "apps" / "repo").mkdir(parents=True)
    (storage / "gitrepository" / "apps" / "repo" / "abc.tar.gz").write_bytes(b"artifact")
    (storage / ".tmp-upload").mkdir()
    (storage / ".tmp-upload" / "half.tar.gz").write_bytes(b"partial")
    (tmp_path / "secret.txt").write_text("outside the storage")
    (storage / "gitrepository" / "apps" / "link.tar.gz").symlink_to(tmp_path / "secret.txt")
    (storage / "escape").symlink_to(tmp_path)
    server = TestServer(make_app(storage))
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_artifacts_are_served(server: TestServer) -> None:
    assert await raw_get(server, "/gitrepository/apps/repo/abc.tar.gz") == 200


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/gitrepository/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/gitrepository/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/gitrepository/apps/link.tar.gz",  # a symlink to a file outside
        "/escape/secret.txt",  # a symlinked directory outside
        "/.tmp-upload/half.tar.gz",  # an artifact still being written
        "//etc/passwd",
        "/gitrepository/apps/repo",  # a directory
    ],
)
async def test_nothing_outside_the_storage_is_served(server: TestServer, path: str) -> None:
    assert await raw_get(server, path) in (400, 404)
