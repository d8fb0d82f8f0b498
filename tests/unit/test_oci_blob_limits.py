"""A hostile registry: blobs larger than the artifact limit or than their declared size stop the
download with a typed error and leave no temporary file; manifests are read with a bound."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tide.controllers.source import oci

BODY = b"x" * (256 * 1024)
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


@pytest.fixture
async def registry() -> AsyncIterator[tuple[oci.RegistryClient, dict[str, int]]]:
    """A registry on loopback serving BODY for any blob (and counting what it sent) and a
    manifest of 5 MiB."""
    sent = {"bytes": 0}

    async def blob(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(0, len(BODY), 16 * 1024):
            await resp.write(BODY[i : i + 16 * 1024])
            sent["bytes"] += 16 * 1024
        return resp

    async def manifest(request: web.Request) -> web.Response:
        doc = {"schemaVersion": 2, "annotations": {"pad": "p" * (5 << 20)}}
        return web.Response(body=json.dumps(doc).encode(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/org/app/blobs/{digest}", blob)
    app.router.add_get("/v2/org/app/manifests/{ref}", manifest)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session:
        repo = oci.parse_url(f"oci://127.0.0.1:{port}/org/app", insecure=True)
        yield oci.RegistryClient(session, repo), sent
    await runner.cleanup()


async def test_blob_declared_larger_than_the_limit_is_not_downloaded(registry, tmp_path: Path) -> None:
    client, sent = registry
    dest = tmp_path / "blob"
    with pytest.raises(oci.BlobTooLarge, match="exceeds the artifact limit of 1000 bytes"):
        await client.download_blob({"digest": DIGEST, "size": len(BODY)}, dest, 1000)
    assert sent["bytes"] == 0
    assert not dest.exists()


async def test_blob_sent_larger_than_the_limit_stops_the_download(registry, tmp_path: Path) -> None:
    client, _ = registry
    dest = tmp_path / "blob"
    # The manifest lies about the size (or gives none): the stream is cut at the limit.
    with pytest.raises(oci.BlobTooLarge, match="artifact limit of 65536 bytes"):
        await client.download_blob({"digest": DIGEST}, dest, 64 * 1024)
    assert not dest.exists()


async def test_blob_larger_than_declared_stops_the_download(registry, tmp_path: Path) -> None:
    client, _ = registry
    dest = tmp_path / "blob"
    with pytest.raises(oci.BlobSizeMismatch, match="more than the declared 1024 bytes"):
        await client.download_blob({"digest": DIGEST, "size": 1024}, dest, 0)
    assert not dest.exists()


async def test_blob_within_the_limits_is_kept(registry, tmp_path: Path) -> None:
    client, _ = registry
    dest = tmp_path / "blob"
    assert await client.download_blob({"digest": DIGEST, "size": len(BODY)}, dest, len(BODY)) == len(BODY)
    assert dest.read_bytes() == BODY


async def test_wrong_digest_deletes_the_file(registry, tmp_path: Path) -> None:
    client, _ = registry
    dest = tmp_path / "blob"
    with pytest.raises(oci.RegistryError, match="digest"):
        await client.download_blob({"digest": "sha256:" + "0" * 64}, dest, 0)
    assert not dest.exists()


async def test_oversized_manifest_is_refused(registry) -> None:
    client, _ = registry
    with pytest.raises(oci.ResponseTooLarge):
        await client.manifest("latest")
