"""HTTP/S access to a Helm chart repository: the index (conditional GET) and chart archives,
streamed to disk with a size cap and hashed on the way. Pure asyncio, no Helm."""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from tide.controllers.source.network_errors import describe_client_error


class HelmHTTPError(Exception):
    """The repository could not be read (message for the condition)."""


class AuthFailed(HelmHTTPError):
    pass


class TooLarge(HelmHTTPError):
    pass


@dataclass(frozen=True)
class RepositoryAccess:
    """Credentials and TLS of one HelmRepository, from its secrets."""

    url: str
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    pass_credentials: bool = False

    def auth_for(self, url: str) -> aiohttp.BasicAuth | None:
        """Helm passes credentials to the repository's own host; elsewhere only with passCredentials."""
        if self.username is None or self.password is None:
            return None
        if not self.pass_credentials and urlsplit(url).netloc != urlsplit(self.url).netloc:
            return None
        return aiohttp.BasicAuth(self.username, self.password)


@dataclass(frozen=True)
class Validators:
    """What the server said identifies the index it sent (for a conditional GET next time)."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Fetched:
    digest: str  # sha256:<hex> of the bytes as sent
    size: int
    validators: Validators


def index_url(repository_url: str) -> str:
    return repository_url.rstrip("/") + "/index.yaml"


async def fetch(
    access: RepositoryAccess,
    url: str,
    dest: Path,
    max_size: int,
    timeout: float,  # noqa: ASYNC109 - one budget for connect, headers and body
    what: str,
    validators: Validators | None = None,
) -> Fetched | None:
    """GET url into dest; None when validators were given and the server says 304 Not Modified."""
    headers = {"User-Agent": "tide-source-controller"}
    if validators is not None:
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(ssl=access.tls if access.tls is not None else True, limit=2)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=client_timeout, auto_decompress=True) as http,
            http.get(url, headers=headers, auth=access.auth_for(url)) as resp,
        ):
            if resp.status == 304 and validators is not None:
                return None
            if resp.status in (401, 403):
                raise AuthFailed(f"failed to fetch {url} : {resp.status} {resp.reason}")
            if resp.status != 200:
                raise HelmHTTPError(f"failed to fetch {url} : {resp.status} {resp.reason}")
            length = resp.content_length
            if max_size and length is not None and length > max_size:
                raise TooLarge(f"{what} size {length} exceeds the maximum of {max_size} bytes")
            h = hashlib.sha256()
            size = 0
            with dest.open("wb") as out:
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if max_size and size > max_size:
                        raise TooLarge(f"{what} exceeds the maximum size of {max_size} bytes")
                    h.update(chunk)
                    out.write(chunk)
            return Fetched(
                "sha256:" + h.hexdigest(),
                size,
                Validators(resp.headers.get("ETag"), resp.headers.get("Last-Modified")),
            )
    except TimeoutError as exc:
        raise HelmHTTPError(f"failed to fetch {url} : timeout after {timeout:g}s") from exc
    except aiohttp.ClientError as exc:
        raise HelmHTTPError(f"failed to fetch {url} : {describe_client_error(exc)}") from exc
