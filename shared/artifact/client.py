"""Download a source artifact, verify its digest, extract it safely.

Used by every controller that consumes sources (kustomize, helm): the URL and digest come
from the source's `status.artifact`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from tide.shared.artifact.errors import (
    ArtifactDigestMismatch,
    ArtifactError,
    ArtifactNotFound,
    ArtifactURLRefused,
)
from tide.shared.artifact.extract import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_EXTRACTED_SIZE, extract_tarball

RETRIES = 5
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 4.0  # --http-retry counts tries: a source controller restart costs seconds, not minutes
CHUNK = 256 * 1024


def localhost_override(url: str) -> str:
    """Flux's SOURCE_CONTROLLER_LOCALHOST: reach the source controller at another host:port."""
    host = os.environ.get("SOURCE_CONTROLLER_LOCALHOST")
    if not host:
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_port(address: str) -> tuple[str, int | None]:
    """`host[:port]` or a URL as (lower-case host without the trailing dot, port or None)."""
    try:
        parts = urlsplit(address if "://" in address else f"http://{address}")
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a malformed host or port matches nothing
        return "", None
    return (parts.hostname or "").rstrip(".").lower(), port


def check_artifact_url(url: str, storage_addresses: Sequence[str]) -> None:
    """Refuse an artifact URL that is not http(s) on one of the source controllers' storage
    addresses (host[:port], port 80 when omitted)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    host, port = _host_port(url)
    allowed = {_host_port(address) for address in storage_addresses if address}
    if scheme not in _DEFAULT_PORTS or not host or (host, port) not in allowed:
        raise ArtifactURLRefused(
            f"refusing to download the artifact from {url!r}: it is not on the source controller's "
            f"storage address ({', '.join(a for a in storage_addresses if a)}; --source-storage-addr)"
        )


def parse_digest(digest: str) -> tuple[str, str]:
    algo, sep, hexdigest = digest.partition(":")
    if not sep or not hexdigest:
        raise ArtifactError(f"invalid artifact digest {digest!r}: expected <algorithm>:<hex>")
    if algo not in hashlib.algorithms_available:
        raise ArtifactError(f"unsupported digest algorithm {algo!r}")
    return algo, hexdigest.lower()


async def download(
    url: str,
    dest_file: Path,
    max_size: int,
    session: aiohttp.ClientSession | None = None,
    retries: int = RETRIES,
) -> None:
    """Stream url into dest_file; retry 5xx and connection errors with backoff."""
    own_session = session is None
    sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60))
    try:
        delay = FIRST_BACKOFF
        for attempt in range(retries + 1):
            try:
                async with sess.get(url) as resp:
                    if resp.status == 404:
                        raise ArtifactNotFound(f"artifact not found at {url} (HTTP 404)")
                    if resp.status >= 500:
                        raise _Retryable(f"artifact server answered HTTP {resp.status} for {url}")
                    if resp.status != 200:
                        raise ArtifactError(f"failed to download artifact from {url}: HTTP {resp.status}")
                    written = 0
                    with dest_file.open("wb") as out:
                        async for chunk in resp.content.iter_chunked(CHUNK):
                            written += len(chunk)
                            if written > max_size:
                                raise ArtifactError(
                                    f"artifact at {url} exceeds the maximum size of {max_size} bytes"
                                )
                            out.write(chunk)
                    return
            except (TimeoutError, _Retryable, aiohttp.ClientError) as exc:
                if attempt >= retries:
                    raise ArtifactError(f"failed to download artifact from {url}: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
    finally:
        if own_session:
            await sess.close()


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_digest(path: Path, digest: str) -> None:
    algo, expected = parse_digest(digest)
    actual = file_digest(path, algo)
    if actual != expected:
        raise ArtifactDigestMismatch(
            f"artifact digest mismatch: expected {algo}:{expected}, got {algo}:{actual}"
        )


async def fetch_artifact(
    url: str,
    digest: str,
    dest_dir: Path,
    max_size: int = DEFAULT_MAX_EXTRACTED_SIZE,
    session: aiohttp.ClientSession | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    retries: int = RETRIES,
) -> Path:
    """Download the artifact at url, check it hashes to digest, extract it into dest_dir.

    Raises ArtifactNotFound on 404 (requeue after --requeue-dependency), ArtifactDigestMismatch
    when the bytes are not the advertised ones (never extracted), ArtifactError otherwise.
    Returns dest_dir.
    """
    parse_digest(digest)
    url = localhost_override(url)
    tmp = Path(tempfile.mkdtemp(prefix="tide-artifact-"))
    try:
        archive = tmp / "artifact.tar.gz"
        await download(url, archive, max_size, session=session, retries=retries)
        await asyncio.to_thread(verify_digest, archive, digest)
        return await asyncio.to_thread(extract_tarball, archive, dest_dir, max_size, max_entries)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


class _Retryable(Exception):
    pass
