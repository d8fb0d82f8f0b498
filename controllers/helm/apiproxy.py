"""The Kubernetes API as the Helm SDK sees it: a loopback proxy that makes Helm behave as Flux's.

The Helm SDK (helm-python-sdk 0.2.2, Helm v4.2.3) has two behaviours Flux does not share, and both
are fixed here, on the wire, without touching Helm:

- Release storage: the SDK keeps release Secrets in the namespace the release is installed into
  (measured: `Config(namespace=storage)` + `install(namespace=target)` stored
  `sh.helm.release.v1.<name>.v1` in `target`). Flux keeps them in `storageNamespace`. Helm's
  storage requests are recognisable (Secrets named `sh.helm.release.v1.*`, lists selecting
  `owner=helm`), so the proxy moves exactly those into the storage namespace named in the URL
  prefix Helm was given (`/storage/<namespace>`). Storage-shaped requests from anything else would
  be moved too: a chart that renders a Secret named `sh.helm.release.v1.*` is refused by Tide's
  post-renderer, which runs for every install and upgrade.
- Field manager: Helm names itself after argv[0]'s basename (`python` here). Flux's is
  `helm-controller`; the proxy sets `fieldManager=helm-controller` on every write, so objects a
  Flux helm-controller applied change hands without conflicts.

The proxy listens on 127.0.0.1 only and admits only requests whose path starts with its own random
token (client-go sends no credentials over plain HTTP); it forwards them with the controller's
real credentials (impersonation headers from Helm pass on).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

from tide.shared.kube.config import Connection

FIELD_MANAGER = "helm-controller"
STORAGE_SECRET_PREFIX = "sh.helm.release.v1."
_PREFIX = re.compile(
    r"^/(?P<token>[A-Za-z0-9_-]+)/storage/(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)(?P<rest>/.*)$"
)
_SECRETS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/secrets(?:/(?P<name>[^/]+))?$")
_WRITES = frozenset({"POST", "PUT", "PATCH"})
_HOP_BY_HOP = frozenset(
    {
        "host",
        "authorization",
        "content-length",
        "transfer-encoding",
        "connection",
        "accept-encoding",
        "keep-alive",
    }
)
_RESPONSE_DROP = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}
)


def is_storage_request(method: str, name: str | None, query: Mapping[str, str], body: bytes) -> bool:
    """Whether a Secrets request is Helm's release storage (pure, table-tested)."""
    if name is not None:
        return name.startswith(STORAGE_SECRET_PREFIX)
    if method == "POST":
        return STORAGE_SECRET_PREFIX.encode() in body and b"helm.sh/release.v1" in body
    selector = query.get("labelSelector", "")
    return "owner=helm" in selector.replace(" ", "").split(",")


def rewrite(
    token: str, method: str, path: str, query: Mapping[str, str], body: bytes
) -> tuple[str, dict[str, str]]:
    """The upstream path and query for a request Helm sent to `/<token>/storage/<ns>/...` (pure)."""
    match = _PREFIX.match(path)
    if not match or not hmac.compare_digest(match["token"].encode(), token.encode()):
        raise PermissionError("not a request of this controller's Helm")
    storage, path = match["ns"], match["rest"]
    secret = _SECRETS.match(path)
    if secret and secret["ns"] != storage and is_storage_request(method, secret["name"], query, body):
        path = f"/api/v1/namespaces/{storage}/secrets" + (f"/{secret['name']}" if secret["name"] else "")
    out = dict(query)
    if method in _WRITES:
        out["fieldManager"] = FIELD_MANAGER
    return path, out


class HelmApiProxy:
    """A loopback HTTP server between the Helm SDK and the API server."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.token = secrets.token_urlsafe(32)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # Helm's watches end only when their upstream does: on close, stop waiting for them.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context(), limit=0)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, storage_namespace: str, namespace: str) -> str:
        """A kubeconfig for the SDK: this proxy, this storage namespace, `namespace` as default."""
        # client-go sends no bearer token over plain HTTP: the proxy's secret is in the path.
        server = f"http://127.0.0.1:{self.port}/{self.token}/storage/{storage_namespace}"
        return (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: tide\n  cluster:\n    server: {server}\n"
            "users:\n- name: tide\n  user: {}\n"
            "contexts:\n- name: tide\n  context:\n    cluster: tide\n    user: tide\n"
            f"    namespace: {namespace}\n"
            "current-context: tide\n"
        )

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            query_in = dict(parse_qsl(request.query_string))
            path, query = rewrite(self.token, request.method, request.path, query_in, body)
        except PermissionError:
            return web.Response(status=401, text="Unauthorized")
        headers: dict[str, Any] = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers.update(await self.connection.auth_headers())
        url = self.connection.host + path + ("?" + urlencode(query) if query else "")
        assert self._session is not None
        try:
            return await self._relay(request, url, body, headers)
        except aiohttp.ClientConnectionError as err:
            return web.Response(status=502, text=f"API server unreachable: {err}")

    async def _relay(
        self, request: web.Request, url: str, body: bytes, headers: dict[str, Any]
    ) -> web.StreamResponse:
        assert self._session is not None
        async with self._session.request(
            request.method, url, data=body or None, headers=headers, timeout=aiohttp.ClientTimeout(total=None)
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _RESPONSE_DROP:
                    response.headers[key] = value
            if upstream.headers.get("Content-Encoding"):
                response.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass  # Helm closed the request (a watch it no longer needs), or the API server did
            return response
