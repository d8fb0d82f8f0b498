"""A client of the OCI distribution (registry v2) API: manifests, tags, blobs, authentication.

What Flux's go-containerregistry client does for OCIRepository, on aiohttp:
- `oci://<registry>/<repository>` names with Docker Hub's defaults;
- credentials from `kubernetes.io/dockerconfigjson` (or `dockercfg`) secrets, matched by host;
- the 401 challenge: `Basic` sends the credentials, `Bearer realm=...,service=...,scope=...` gets a
  token from the realm (anonymous or with the credentials) and sends that;
- https, and for `insecure` or loopback/private registries a fall back to plain http.

The scheme that answered and the Authorization that worked are remembered per registry,
repository and credentials, so a no-op reconcile is one request.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import ipaddress
import json
import re
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from tide.controllers.source.network_errors import describe_client_error
from tide.controllers.source.proxy import Proxy
from tide.shared import boundedjson

OCI_PREFIX = "oci://"
DOCKER_HUB = "index.docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[2:]
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_TOKEN_TTL = 60.0
_INVALID_REALM = "invalid realm in www-authenticate"  # the distribution token spec's default expires_in


class RegistryError(Exception):
    """A request to the registry failed (message like go-containerregistry's)."""


class AuthenticationError(RegistryError):
    pass


class Unreachable(RegistryError):
    pass


class BlobTooLarge(RegistryError):
    """A blob (declared or as sent) larger than the artifact limit."""


class BlobSizeMismatch(RegistryError):
    """The registry sent more or fewer bytes than the manifest declares for the blob."""


class ResponseTooLarge(RegistryError):
    """A manifest or tag list larger than any registry should send."""


# The OCI distribution spec has registries accept manifests up to 4 MiB; nothing this client
# reads into memory (manifests, tag lists, error bodies) needs more.
MAX_RESPONSE_BYTES = 4 << 20


class InvalidURL(Exception):
    pass


class InvalidCredentials(Exception):
    pass


# -- names ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    registry: str  # host[:port] as named (Docker Hub: index.docker.io)
    path: str  # e.g. org/app
    insecure: bool = False

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.path}"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def schemes(self) -> tuple[str, ...]:
        """https first; plain http after it for insecure, localhost, loopback and private hosts."""
        return ("https", "http") if self.insecure or _local(self.registry) else ("https",)

    def reference(self, tag: str | None = None, digest: str | None = None) -> str:
        return f"{self.name}@{digest}" if digest else f"{self.name}:{tag}"


def _local(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".local"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def parse_url(url: str, insecure: bool = False) -> Repository:
    """`oci://<registry>/<repository>`, no tag or digest (Flux: spec.ref says which)."""
    if not url.startswith(OCI_PREFIX):
        raise InvalidURL("URL must be in format 'oci://<domain>/<org>/<repo>'")
    rest = url[len(OCI_PREFIX) :].rstrip("/")
    if "@" in rest:
        raise InvalidURL(f"URL must not contain a digest; remove '@{rest.split('@', 1)[1]}'")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
        if "/" not in path:
            path = f"library/{path}"
    if registry == "docker.io":
        registry = DOCKER_HUB
    if ":" in path:
        raise InvalidURL(f"URL must not contain a tag; remove ':{path.split(':', 1)[1]}'")
    if not path or not all(_COMPONENT.match(c) for c in path.split("/")):
        raise InvalidURL(
            f"repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: {path}"
        )
    return Repository(registry, path, insecure)


# -- credentials --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # OAuth2 refresh token for the realm
    registry_token: str = ""  # a bearer token sent as-is

    def fingerprint(self) -> str:
        raw = "\0".join((self.username, self.password, self.identity_token, self.registry_token))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _host_of(key: str) -> str:
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return DOCKER_HUB if host in ("docker.io", DOCKER_HUB_API) else host


def docker_config_auths(data: Mapping[str, bytes]) -> dict[str, Any]:
    """The `auths` of a `.dockerconfigjson` (or the map of a legacy `.dockercfg`)."""
    for key, legacy in ((".dockerconfigjson", False), (".dockercfg", True)):
        if key not in data:
            continue
        try:
            doc = json.loads(data[key])
        except ValueError as exc:
            raise InvalidCredentials(f"invalid {key}: {exc}") from exc
        auths = doc if legacy else doc.get("auths")
        if not isinstance(auths, dict):
            raise InvalidCredentials(f"invalid {key}: no 'auths' map")
        return auths
    raise InvalidCredentials("secret has neither '.dockerconfigjson' nor '.dockercfg'")


def credentials_for(registry: str, auths: Mapping[str, Any]) -> Credentials | None:
    """The entry for the registry's host: exact first, then `*.domain` globs."""
    host = registry.lower()
    entries = [(_host_of(k), v) for k, v in auths.items() if isinstance(v, dict)]
    match = next((v for h, v in entries if h == host), None)
    if match is None:
        match = next((v for h, v in entries if "*" in h and fnmatch.fnmatchcase(host, h)), None)
    if match is None:
        return None
    username, password = str(match.get("username") or ""), str(match.get("password") or "")
    if match.get("auth") and not username:
        try:
            username, _, password = base64.b64decode(str(match["auth"])).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidCredentials(f"invalid 'auth' for '{registry}': {exc}") from exc
    return Credentials(
        username, password, str(match.get("identitytoken") or ""), str(match.get("registrytoken") or "")
    )


# -- challenges ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: basic | bearer
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge | None:
    """`WWW-Authenticate: Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
        pos = m.end()
    return Challenge(scheme.lower(), params)


def check_realm(realm: str, registry: str, insecure: bool) -> None:
    """go-containerregistry's guard against a registry sending the client (and its credentials)
    to internal addresses: https (http only for a registry spoken to over http), and no loopback,
    private or link-local IP literal unless the realm is the registry's own host:port."""
    parts = urlsplit(realm)
    if parts.scheme == "http" and not insecure:
        raise AuthenticationError(
            f'{_INVALID_REALM}: realm scheme "http" not allowed for a secure registry; use https'
        )
    if parts.scheme not in ("http", "https"):
        raise AuthenticationError(
            f'{_INVALID_REALM}: realm scheme "{parts.scheme}" not allowed; '
            "must be https (or http for insecure registries)"
        )
    if parts.netloc == registry:
        return
    try:
        ip = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return  # names are not resolved here (as in go-containerregistry)
    if ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_unspecified:
        raise AuthenticationError(
            f'{_INVALID_REALM}: realm host "{parts.hostname}" is a private or link-local address'
        )


def token_url(challenge: Challenge, repository: str, extra_scope: str | None = None) -> str:
    query = {"scope": extra_scope or f"repository:{repository}:pull"}
    if challenge.params.get("service"):
        query = {"service": challenge.params["service"], **query}
    realm = challenge.params.get("realm", "")
    return realm + ("&" if "?" in realm else "?") + urlencode(query)


# -- TLS ------------------------------------------------------------------------------------------

_contexts: dict[str, ssl.SSLContext] = {}


def tls_context(
    ca: bytes | None = None, cert: bytes | None = None, key: bytes | None = None, skip_verify: bool = False
) -> ssl.SSLContext:
    """System CAs plus ca.crt, the client certificate if given; cached by content (blocking: loads
    the system store once)."""
    cache_key = hashlib.sha256(b"\0".join((ca or b"", cert or b"", key or b"", b"%d" % skip_verify)))
    found = _contexts.get(cache_key.hexdigest())
    if found is not None:
        return found
    ctx = ssl.create_default_context()
    if skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if ca:
        try:
            ctx.load_verify_locations(cadata=ca.decode())
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidCredentials(f"failed to parse CA certificate 'ca.crt': {exc}") from exc
    if bool(cert) != bool(key):
        raise InvalidCredentials("'tls.crt' and 'tls.key' must be given together")
    if cert and key:
        with tempfile.TemporaryDirectory(prefix="tide-oci-tls-") as tmp:
            (Path(tmp) / "tls.crt").write_bytes(cert)
            (Path(tmp) / "tls.key").write_bytes(key)
            try:
                ctx.load_cert_chain(str(Path(tmp) / "tls.crt"), str(Path(tmp) / "tls.key"))
            except (ssl.SSLError, ValueError) as exc:
                raise InvalidCredentials(
                    f"failed to load client certificate 'tls.crt'/'tls.key': {exc}"
                ) from exc
    if len(_contexts) > 256:
        _contexts.clear()
    _contexts[cache_key.hexdigest()] = ctx
    return ctx


# -- the client -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    digest: str
    media_type: str = ""
    size: int = -1


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: dict[str, Any]

    @property
    def annotations(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.body.get("annotations") or {}).items()}


@dataclass
class _Session:
    scheme: str
    authorization: str | None
    expires: float | None  # monotonic; None: no expiry (basic)


class AuthCache:
    """Working scheme and Authorization per (registry, repository, credentials)."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str, str], _Session] = {}

    def get(self, key: tuple[str, str, str]) -> _Session | None:
        found = self._sessions.get(key)
        if found is not None and found.expires is not None and found.expires < time.monotonic():
            found.authorization = None
        return found

    def put(self, key: tuple[str, str, str], session: _Session) -> None:
        if len(self._sessions) > 4096:
            self._sessions.clear()
        self._sessions[key] = session


def _go_map(value: Any) -> str:
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_map(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_map(v) for v in value) + "]"
    return "" if value is None else str(value)


def _client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"malformed HTTP response (status {exc.status}): {' '.join(str(exc.message).split())[:200]}"
    return describe_client_error(exc)


def _status_error(method: str, url: str, status: int, reason: str, body: bytes) -> str:
    """`GET <url>: MANIFEST_UNKNOWN: manifest unknown; map[Tag:x]` or the status line."""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    parts = []
    for e in errors if isinstance(errors, list) else []:
        if not isinstance(e, dict):
            continue
        text = f"{e.get('code', '')}: {e.get('message', '')}"
        if e.get("detail") not in (None, "", {}, []):
            text += f"; {_go_map(e['detail'])}"
        parts.append(text)
    if parts:
        return f"{method} {url}: {'; '.join(parts)}"
    return f"{method} {url}: unexpected status code {status} {reason}".rstrip()


def parse_manifest(body: bytes, content_type: str = "") -> tuple[str, dict[str, Any]]:
    """A manifest's media type and document, its shape checked where Tide reads it (layers a
    list of descriptors, annotations a map of strings): anything else is a RegistryError."""
    try:
        doc = boundedjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(f"failed to parse artifact manifest: {exc}") from exc
    if not isinstance(doc, dict):
        raise RegistryError("failed to parse artifact manifest: not a JSON object")
    layers = doc.get("layers")
    if layers is not None and not (
        isinstance(layers, list)
        and all(isinstance(x, dict) and isinstance(x.get("digest"), str) for x in layers)
    ):
        raise RegistryError("failed to parse artifact manifest: layers must be a list of descriptors")
    annotations = doc.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise RegistryError("failed to parse artifact manifest: annotations must be a map of strings")
    media_type = doc.get("mediaType")
    return (media_type if isinstance(media_type, str) and media_type else content_type), doc


async def _read_bounded(resp: aiohttp.ClientResponse, what: str) -> bytes:
    body = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise ResponseTooLarge(f"{what}: response larger than {MAX_RESPONSE_BYTES} bytes")
    return bytes(body)


class RegistryClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        repo: Repository,
        credentials: Credentials | None = None,
        proxy: Proxy | None = None,
        cache: AuthCache | None = None,
    ) -> None:
        self.http = session
        self.repo = repo
        self.credentials = credentials
        self.proxy = proxy
        self.cache = cache or AuthCache()
        self._key = (repo.registry, repo.path, credentials.fingerprint() if credentials else "")
        self.requests = 0

    # -- API ----------------------------------------------------------------------------------

    async def resolve(self, reference: str) -> Descriptor:
        """The manifest digest of a tag: a HEAD, or a GET where HEAD gives no digest."""
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        try:
            status, resp_headers, _ = await self._call("HEAD", f"manifests/{reference}", headers)
        except Unreachable:
            raise
        except RegistryError:
            # A HEAD error has no body: the GET below fails with the registry's explanation.
            status, resp_headers = 0, {}
        digest = resp_headers.get("Docker-Content-Digest", "")
        if status == 200 and digest:
            return Descriptor(
                digest, resp_headers.get("Content-Type", ""), int(resp_headers.get("Content-Length", -1))
            )
        manifest = await self.manifest(reference)
        return Descriptor(manifest.digest, manifest.media_type)

    async def manifest(self, reference: str) -> Manifest:
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        _, resp_headers, body = await self._call("GET", f"manifests/{reference}", headers)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"manifest digest '{digest}' does not match the requested '{reference}'")
        media_type, doc = parse_manifest(body, resp_headers.get("Content-Type", ""))
        if media_type in INDEX_TYPES:
            raise RegistryError(
                f"'{self.repo.name}' reference '{reference}' is an image index ({media_type}), "
                "not an artifact manifest"
            )
        return Manifest(digest, media_type, doc)

    async def tags(self) -> list[str]:
        tags: list[str] = []
        path: str | None = "tags/list?n=1000"
        while path is not None:
            _, headers, body = await self._call("GET", path, {"Accept": "application/json"})
            try:
                tags.extend(json.loads(body).get("tags") or [])
            except (ValueError, AttributeError) as exc:
                raise RegistryError(f"failed to parse the tag list: {exc}") from exc
            link = re.match(r"\s*<([^>]+)>\s*;\s*rel=\"?next\"?", headers.get("Link", ""))
            path = None
            if link:
                target = link.group(1)
                prefix = f"/v2/{self.repo.path}/"
                path = target.split(prefix, 1)[1] if prefix in target else None
        return tags

    async def download_blob(self, layer: Mapping[str, Any], dest: Path, max_size: int = 0) -> int:
        """Stream the blob into dest, checking its sha256 digest (and size when given). A blob
        declared or sent larger than max_size (0: no limit), or longer than declared, stops the
        download; on any error dest is deleted."""
        digest = str(layer.get("digest") or "")
        if not digest.startswith("sha256:"):
            raise RegistryError(f"unsupported layer digest '{digest}'")
        declared = layer.get("size")
        expected = declared if isinstance(declared, int) and not isinstance(declared, bool) else -1
        if max_size and expected > max_size:
            raise BlobTooLarge(
                f"layer {digest}: size {expected} bytes exceeds the artifact limit of {max_size} bytes"
            )
        try:
            return await self._stream_blob(digest, dest, expected, max_size)
        except BaseException:
            await asyncio.to_thread(dest.unlink, True)
            raise

    async def _stream_blob(self, digest: str, dest: Path, expected: int, max_size: int) -> int:
        resp = await self._send("GET", f"blobs/{digest}", {})
        h = hashlib.sha256()
        size = 0
        try:
            with dest.open("wb") as out:
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if expected >= 0 and size > expected:
                        raise BlobSizeMismatch(
                            f"layer {digest}: the registry sent more than the declared {expected} bytes"
                        )
                    if max_size and size > max_size:
                        raise BlobTooLarge(
                            f"layer {digest}: more than the artifact limit of {max_size} bytes"
                        )
                    h.update(chunk)
                    out.write(chunk)
        except aiohttp.ClientError as exc:
            raise RegistryError(f"GET blob {digest}: {_client_error(exc)}") from exc
        finally:
            resp.release()
        if expected >= 0 and expected != size:
            raise BlobSizeMismatch(f"layer {digest}: downloaded {size} bytes, expected {expected}")
        if "sha256:" + h.hexdigest() != digest:
            raise RegistryError(f"layer {digest}: downloaded content has digest sha256:{h.hexdigest()}")
        return size

    # -- transport ------------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, headers: dict[str, str], ok: tuple[int, ...] = (200,)
    ) -> tuple[int, Mapping[str, str], bytes]:
        resp = await self._send(method, path, headers, ok=ok)
        try:
            body = await _read_bounded(resp, f"{method} {resp.url}") if method != "HEAD" else b""
            return resp.status, resp.headers, body
        except aiohttp.ClientError as exc:
            raise RegistryError(f"{method} {resp.url}: {_client_error(exc)}") from exc
        finally:
            resp.release()

    async def _send(
        self, method: str, path: str, headers: dict[str, str], ok: tuple[int, ...] = (200,)
    ) -> aiohttp.ClientResponse:
        session = self.cache.get(self._key)
        schemes = (session.scheme,) if session else self.repo.schemes()
        authorization = session.authorization if session else None
        if authorization is None and self.credentials and self.credentials.registry_token:
            authorization = f"Bearer {self.credentials.registry_token}"
        failures: list[str] = []
        for scheme in schemes:
            url = f"{scheme}://{self.repo.api_host}/v2/{self.repo.path}/{path}"
            try:
                resp = await self._request(method, url, headers, authorization)
            except aiohttp.ClientError as exc:
                # Not answered as HTTP: the next scheme, if the registry may speak it.
                failures.append(f"{method} {url}: {_client_error(exc)}")
                continue
            expires = session.expires if session else None
            if resp.status == 401:
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                resp.release()
                authorization, expires = await self._authenticate(method, url, challenge)
                try:
                    resp = await self._request(method, url, headers, authorization)
                except aiohttp.ClientError as exc:
                    raise Unreachable(f"{method} {url}: {_client_error(exc)}") from exc
            self.cache.put(self._key, _Session(scheme, authorization, expires))
            if resp.status in ok:
                return resp
            try:
                body = b"" if method == "HEAD" else await _read_bounded(resp, f"{method} {url}")
            except (aiohttp.ClientError, ResponseTooLarge):
                body = b""
            finally:
                resp.release()
            message = _status_error(method, url, resp.status, resp.reason or "", body)
            if resp.status in (401, 403):
                raise AuthenticationError(message)
            raise RegistryError(message)
        raise Unreachable("; ".join(failures))

    async def _request(
        self, method: str, url: str, headers: dict[str, str], authorization: str | None
    ) -> aiohttp.ClientResponse:
        send = dict(headers)
        if authorization:
            send["Authorization"] = authorization
        self.requests += 1
        return await self.http.request(method, url, headers=send, **self._proxy_args())

    def _proxy_args(self) -> dict[str, Any]:
        if self.proxy is None:
            return {}
        auth = None
        if self.proxy.username:
            auth = aiohttp.BasicAuth(self.proxy.username, self.proxy.password or "")
        return {"proxy": self.proxy.address, "proxy_auth": auth}

    async def _token_request(
        self, method: str, url: str, insecure: bool, headers: dict[str, str], form: dict[str, str] | None
    ) -> tuple[int, str, bytes]:
        """A token request; each redirect passes check_realm, credentials stay on the first host."""
        origin = urlsplit(url).netloc
        for _ in range(10):
            self.requests += 1
            send = headers if urlsplit(url).netloc == origin else {}
            resp = await self.http.request(
                method, url, headers=send, data=form, allow_redirects=False, **self._proxy_args()
            )
            try:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    check_realm(url, self.repo.api_host, insecure)
                    if resp.status == 303:
                        method, form = "GET", None
                    continue
                return resp.status, resp.reason or "", await resp.read()
            finally:
                resp.release()
        raise AuthenticationError(f"failed to get a token from '{url}': stopped after 10 redirects")

    async def _authenticate(
        self, method: str, url: str, challenge: Challenge | None
    ) -> tuple[str, float | None]:
        creds = self.credentials
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise AuthenticationError(
                f"{method} {url}: unexpected status code 401 Unauthorized "
                "(no supported WWW-Authenticate challenge)"
            )
        if challenge.scheme == "basic":
            if creds is None or not (creds.username or creds.password):
                raise AuthenticationError(f"{method} {url}: UNAUTHORIZED: authentication required")
            raw = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode(), None
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthenticationError(f"{method} {url}: bearer challenge without realm")
        insecure = url.startswith("http://")
        check_realm(realm, self.repo.api_host, insecure)
        started = time.monotonic()
        try:
            if creds and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": challenge.params.get("service", ""),
                    "scope": f"repository:{self.repo.path}:pull",
                    "client_id": "tide",
                }
                status, reason, body = await self._token_request("POST", realm, insecure, {}, form)
            else:
                headers: dict[str, str] = {}
                if creds and (creds.username or creds.password):
                    raw = f"{creds.username}:{creds.password}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
                endpoint = token_url(challenge, self.repo.path)
                status, reason, body = await self._token_request("GET", endpoint, insecure, headers, None)
        except aiohttp.ClientError as exc:
            raise AuthenticationError(f"failed to get a token from '{realm}': {_client_error(exc)}") from exc
        if status != 200:
            message = _status_error("GET", realm, status, reason, body)
            raise AuthenticationError(f"failed to get a token: {message}")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise AuthenticationError(f"failed to parse the token from '{realm}': {exc}") from exc
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise AuthenticationError(f"no token in the response of '{realm}'")
        ttl = float(doc.get("expires_in") or _TOKEN_TTL)
        return f"Bearer {token}", started + max(ttl - 10.0, ttl / 2)
