"""The Kubernetes API as the Helm SDK sees it: a loopback proxy that makes Helm behave as Flux's.

The Helm SDK (helm-python-sdk 0.2.2, Helm v4.2.3) has two behaviours Flux does not share, and both
are fixed here, on the wire, without touching Helm (and one cost, cut here too):

- Release storage: the SDK keeps release Secrets in the namespace the release is installed into
  (measured: `Config(namespace=storage)` + `install(namespace=target)` stored
  `sh.helm.release.v1.<name>.v1` in `target`). Flux keeps them in `storageNamespace`. Helm's
  storage requests are recognisable (Secrets named `sh.helm.release.v1.*`, lists selecting
  `owner=helm`), so the proxy moves exactly those into the storage namespace named in the URL
  prefix Helm was given (`/storage/<namespace>`). Storage-shaped requests from anything else would
  be moved too: a chart that renders a Secret named `sh.helm.release.v1.*` is refused by Tide's
  post-renderer, which runs for every install and upgrade.
- Discovery: Helm reads the whole discovery again at every install and upgrade. On this cluster's
  connection the proxy answers those reads from what it read last while watches of CRDs and
  APIServices see no change (discovery_cache.py), so an install costs the API server its own work.
- Waits: Helm's kstatus wait opens a watch of each kind it installed, at every install, upgrade
  and hook. On the controller's own identity those are answered from one shared watch per resource
  (wait_watch), once it holds what the proxy just wrote for the release.
- Field manager: Helm names itself after argv[0]'s basename (`python` here). Flux's is
  `helm-controller`; the proxy sets `fieldManager=helm-controller` on every write, so objects a
  Flux helm-controller applied change hands without conflicts.

The proxy listens on 127.0.0.1 only and admits only requests whose path starts with its own random
token (client-go sends no credentials over plain HTTP); it forwards them with the controller's
real credentials.

Whom Helm acts as, and on which cluster, is the proxy's decision too (Flux's serviceAccountName and
kubeConfig): each release's kubeconfig names a route (`/<token>/to/<route>/...`), and the route says
which connection the request goes out on (this cluster's, or a remote one from a kubeConfig Secret)
and which ServiceAccount it impersonates. Impersonation headers Helm itself would send are dropped:
a chart or an SDK option cannot choose its own identity.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from tide.controllers.helm.discovery_cache import (
    API_KINDS,
    DiscoveryCache,
    Document,
    changes_apis,
    document_key,
    is_discovery_read,
    server_minor,
)
from tide.controllers.helm.wait_watch import (
    ORIGIN_NAME_LABEL,
    ORIGIN_NAMESPACE_LABEL,
    UPSTREAM_ERRORS,
    Origin,
    WaitWatches,
    collection_of,
    is_watch_list,
    watch_lines,
)
from tide.shared.kube.config import Connection, KubeconfigError

FIELD_MANAGER = "helm-controller"
STORAGE_SECRET_PREFIX = "sh.helm.release.v1."
_PREFIX = re.compile(
    r"^/(?P<token>[A-Za-z0-9_-]+)/storage/(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"(?:/of/(?P<origin_ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/(?P<origin>[a-z0-9]([-.a-z0-9]*[a-z0-9])?))?"
    r"(?P<rest>/.*)$"
)
_ROUTE = re.compile(r"^/(?P<token>[A-Za-z0-9_-]+)/to/(?P<route>[a-z0-9]{1,32})(?P<rest>/.*)$")
LOCAL_ROUTE = "local"
"""This cluster, as the controller itself."""
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
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
API_WATCH_SECONDS = 600
"""How long one watch of API_KINDS lasts before it is started again (the API server ends it too)."""
API_WATCH_RETRY = 30.0
"""Seconds before a failed watch of API_KINDS is tried again (meanwhile discovery is not cached)."""


def relayed_headers(upstream: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The API server's response headers as the proxy passes them to Helm (pure): framing and
    connection headers dropped, the body's Content-Encoding kept (the body is relayed as sent)."""
    kept = tuple((k, v) for k, v in upstream.items() if k.lower() not in _RESPONSE_DROP)
    if upstream.get("Content-Encoding"):
        kept += (("Content-Encoding", upstream["Content-Encoding"]),)
    return kept


def split_route(path: str) -> tuple[str, str]:
    """The route a request path names and the path without it (pure): `/<token>/to/<route>/rest`
    is (`route`, `/<token>/rest`); a path naming none is the local route's."""
    match = _ROUTE.match(path)
    if not match:
        return LOCAL_ROUTE, path
    return match["route"], f"/{match['token']}{match['rest']}"


def route_name(slot: str) -> str:
    """The route of a target slot (shared.kube.targets): stable while the slot is."""
    return hashlib.sha256(slot.encode()).hexdigest()[:16] if slot else LOCAL_ROUTE


def upstream_headers(incoming: Mapping[str, str], impersonate: str | None) -> dict[str, str]:
    """The headers a request goes upstream with (pure, before credentials): hop-by-hop headers and
    any impersonation Helm asked for dropped, the route's ServiceAccount impersonated."""
    out = {
        k: v
        for k, v in incoming.items()
        if k.lower() not in _HOP_BY_HOP and not k.lower().startswith("impersonate-")
    }
    if impersonate:
        out["Impersonate-User"] = impersonate
    return out


@dataclass
class Route:
    """Where a route's requests go (a connection) and as whom (a ServiceAccount user, or None)."""

    connection: Connection
    impersonate: str | None = None
    session: aiohttp.ClientSession | None = field(default=None, repr=False)


def is_storage_request(method: str, name: str | None, query: Mapping[str, str], body: bytes) -> bool:
    """Whether a Secrets request is Helm's release storage (pure, table-tested)."""
    if name is not None:
        return name.startswith(STORAGE_SECRET_PREFIX)
    if method == "POST":
        return STORAGE_SECRET_PREFIX.encode() in body and b"helm.sh/release.v1" in body
    selector = query.get("labelSelector", "")
    return "owner=helm" in selector.replace(" ", "").split(",")


def is_informer_read(method: str, path: str, query: Mapping[str, str]) -> bool:
    """Whether a request is an informer's list or watch of a whole collection (pure): no selector,
    and a resourceVersion or watch, as client-go's reflector sends them (Helm's kstatus wait). A
    chart's `lookup` lists without a resourceVersion; named objects and subresources are not
    collections."""
    if method != "GET" or "labelSelector" in query or "fieldSelector" in query:
        return False
    if "resourceVersion" not in query and query.get("watch") not in ("1", "true"):
        return False
    return collection_of(path) is not None


def waited_release(path: str, method: str, query: Mapping[str, str]) -> Origin | None:
    """The HelmRelease whose objects a request of Helm's wait reads: an informer's read under
    `/<token>/storage/<ns>/of/<hr-ns>/<hr>` (pure; the token is checked by rewrite)."""
    match = _PREFIX.match(path)
    if not match or not match["origin"] or not is_informer_read(method, match["rest"], query):
        return None
    return match["origin_ns"], match["origin"]


def rewrite(
    token: str, method: str, path: str, query: Mapping[str, str], body: bytes
) -> tuple[str, dict[str, str]]:
    """The upstream path and query for a request Helm sent to `/<token>/storage/<ns>[/of/<hr-ns>/
    <hr>]/...` (pure). With the HelmRelease named, an informer's list or watch (Helm's kstatus
    wait) selects the objects carrying its origin labels, which Tide's post-renderer puts on every
    object of the release, hooks included: Helm's wait otherwise reads every object of each kind
    in the namespace, for every install (Flux's own poller reads only the release's objects)."""
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
    if match["origin"] and is_informer_read(method, path, query):
        out["labelSelector"] = (
            f"{ORIGIN_NAME_LABEL}={match['origin']},{ORIGIN_NAMESPACE_LABEL}={match['origin_ns']}"
        )
    return path, out


class HelmApiProxy:
    """A loopback HTTP server between the Helm SDK and the API server."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.token = secrets.token_urlsafe(32)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._routes: dict[str, Route] = {LOCAL_ROUTE: Route(connection)}
        self._retired: set[asyncio.Task[None]] = set()
        self._watches: list[asyncio.Task[None]] = []
        self._reading: dict[tuple[str, str, str], asyncio.Future[Document | None]] = {}
        self.discovery = DiscoveryCache(time.monotonic)
        """This cluster's discovery, for the routes on the proxy's own connection (see discovery_cache)."""
        self.waits = WaitWatches(connection, self._local_session)
        """Helm's waits as the controller on this cluster, read from shared watches (see wait_watch)."""
        self.port = 0

    def route(self, slot: str, connection: Connection, impersonate: str | None) -> str:
        """The route for a target (its slot, connection and identity), registered or updated; a
        remote route whose connection changed (a new kubeconfig Secret) closes the old one's pool."""
        if not slot and connection is self.connection and impersonate is None:
            return LOCAL_ROUTE
        name = route_name(slot or f"|{impersonate}")
        current = self._routes.get(name)
        if current is not None and current.connection is connection and current.impersonate == impersonate:
            return name
        self._routes[name] = Route(connection, impersonate)
        if current is not None and current.session is not None:
            task = asyncio.get_running_loop().create_task(_close_later(current.session))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        return name

    def server_validates_fields(self, route_key: str) -> bool:
        """Whether the cluster behind a route validates every kind's fields itself (see
        discovery_cache.DiscoveryCache.server_validates_fields): known for this cluster only."""
        route = self._routes.get(route_key)
        return (
            route is not None
            and route.connection is self.connection
            and self.discovery.server_validates_fields
        )

    def _local_session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    def _session_for(self, route: Route) -> aiohttp.ClientSession:
        if route.connection is self.connection:
            return self._local_session()
        if route.session is None or route.session.closed:
            connector = aiohttp.TCPConnector(ssl=route.connection.ssl_context(), limit=0)
            route.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return route.session

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # Helm's watches end only when their upstream does: on close, stop waiting for them. A
        # request Helm drops (a wait done) cancels its handler, which ends the upstream request:
        # a watch scoped to one release may otherwise see no event, and stay open, for minutes.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context(), limit=0)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        loop = asyncio.get_running_loop()
        self._watches = [loop.create_task(self._watch_apis(kind), name=f"watch {kind}") for kind in API_KINDS]

    async def close(self) -> None:
        for task in [*self._retired, *self._watches]:
            task.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)
        await self.waits.close()
        for route in self._routes.values():
            if route.session is not None:
                await route.session.close()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(
        self,
        storage_namespace: str,
        namespace: str,
        route: str = LOCAL_ROUTE,
        origin: tuple[str, str] | None = None,
    ) -> str:
        """A kubeconfig for the SDK: this proxy, a route, this storage namespace, `namespace` as
        default; `origin` (namespace, name) is the HelmRelease whose objects Helm's waits read."""
        # client-go sends no bearer token over plain HTTP: the proxy's secret is in the path.
        server = f"http://127.0.0.1:{self.port}/{self.token}/to/{route}/storage/{storage_namespace}"
        if origin is not None:
            server += f"/of/{origin[0]}/{origin[1]}"
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
            route_key, rest = split_route(request.path)
            query_in = dict(parse_qsl(request.query_string))
            path, query = rewrite(self.token, request.method, rest, query_in, body)
            route = self._routes.get(route_key)
            if route is None:
                raise PermissionError("unknown route")
        except PermissionError:
            return web.Response(status=401, text="Unauthorized")
        local = route.connection is self.connection
        if local and is_discovery_read(request.method, path):
            document = self.discovery.get(route_key, path, request.headers)
            reading = self._reading.get(document_key(route_key, path, request.headers))
            if document is None and reading is not None:  # Helm's concurrent actions ask at once
                document = await asyncio.shield(reading)
            if document is not None:
                return web.Response(body=document.body, headers=document.headers)
        if local and changes_apis(request.method, path):
            self.discovery.changed()
        own = local and route.impersonate is None  # the controller's own reads: shared watches serve them
        waited = waited_release(rest, request.method, query_in) if own else None
        if waited is not None and is_watch_list(query_in):
            timeout = float(query_in.get("timeoutSeconds") or API_WATCH_SECONDS)
            served = await self.waits.serve(request, path, waited, lasting=timeout)
            if served is not None:
                return served
        headers: dict[str, Any] = upstream_headers(request.headers, route.impersonate)
        url = route.connection.host + path + ("?" + urlencode(query) if query else "")
        try:
            headers.update(await route.connection.auth_headers())
            session = self._session_for(route)
            if local and is_discovery_read(request.method, path):
                return await self._read_discovery(session, request, route_key, path, url, headers)
            return await self._relay(session, request, url, body, headers, path if own else None)
        except aiohttp.ClientConnectionError as err:
            return web.Response(status=502, text=f"API server unreachable: {err}")
        except (KubeconfigError, OSError, ssl.SSLError) as err:  # a remote's credentials or TLS
            return web.Response(status=502, text=f"API server unreachable: {type(err).__name__}: {err}")

    async def _read_discovery(
        self,
        session: aiohttp.ClientSession,
        request: web.Request,
        route_key: str,
        path: str,
        url: str,
        headers: dict[str, Any],
    ) -> web.Response:
        """A discovery document from the API server, kept for the next Helm action if nothing changed."""
        ticket = self.discovery.begin()
        key = document_key(route_key, path, request.headers)
        read: asyncio.Future[Document | None] = asyncio.get_running_loop().create_future()
        if ticket is not None and key not in self._reading:  # reads that start meanwhile wait for it
            self._reading[key] = read
        document: Document | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=60)
            async with session.get(url, headers=headers, timeout=timeout) as upstream:
                body = await upstream.read()
                kept = relayed_headers(upstream.headers)
                fetched = Document(body, kept)
                if upstream.status == 200 and self.discovery.put(
                    route_key, path, request.headers, ticket, fetched
                ):
                    document = fetched
                return web.Response(status=upstream.status, reason=upstream.reason, body=body, headers=kept)
        finally:
            if self._reading.get(key) is read:
                del self._reading[key]
            read.set_result(document)  # None: the waiting reads go to the API server themselves

    async def _watch_apis(self, kind: str) -> None:
        """Watch one of discovery_cache.API_KINDS on this cluster: any event may change discovery.
        CRDs are watched as metadata only (the event is all that counts); APIServices whole, to know
        which are served by another server. A list gives the resourceVersion to watch from; a watch
        that ends or fails is started again (what happened in between is unknown: the cache forgets
        all)."""
        url = f"{self.connection.host}/apis/{kind}"
        whole = kind == API_KINDS[1]
        while True:
            try:
                assert self._session is not None
                auth = await self.connection.auth_headers()
                plain = {"Accept": "application/json", "Accept-Encoding": "identity", **auth}
                if whole:
                    async with self._session.get(f"{self.connection.host}/version", headers=plain) as got:
                        self.discovery.server_minor = server_minor(await _json(got))
                headers = plain if whole else {**plain, "Accept": _METADATA_LIST}
                params = {} if whole else {"limit": "1"}
                async with self._session.get(url, params=params, headers=headers) as listed:
                    collection = await _json(listed)
                version = collection["metadata"]["resourceVersion"]
                if whole:
                    self.discovery.apiservices_listed(collection.get("items") or [])
                params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": str(API_WATCH_SECONDS)}
                timeout = aiohttp.ClientTimeout(total=None, sock_read=API_WATCH_SECONDS + 60)
                headers = plain if whole else {**plain, "Accept": _METADATA_WATCH}
                async with self._session.get(url, params=params, headers=headers, timeout=timeout) as watch:
                    if watch.status != 200:
                        raise aiohttp.ClientResponseError(watch.request_info, (), status=watch.status)
                    self.discovery.watch_started(kind)
                    async for lines in watch_lines(watch):
                        self.discovery.changed()  # an event (or part of one)
                        for line in lines if whole else ():
                            event = json.loads(line)
                            self.discovery.apiservice_event(event.get("type", ""), event.get("object") or {})
                self.discovery.watch_stopped(kind)
                continue
            except UPSTREAM_ERRORS:
                pass  # not allowed to watch, or the API server went away: discovery is read every time
            self.discovery.watch_stopped(kind)
            await asyncio.sleep(API_WATCH_RETRY)

    async def _relay(
        self,
        session: aiohttp.ClientSession,
        request: web.Request,
        url: str,
        body: bytes,
        headers: dict[str, Any],
        own_path: str | None,
    ) -> web.StreamResponse:
        """Relay a request and stream its answer back; a write on the controller's own identity
        (`own_path`) is read whole first, so that waits on shared watches know what it wrote."""
        async with session.request(
            request.method, url, data=body or None, headers=headers, timeout=aiohttp.ClientTimeout(total=None)
        ) as upstream:
            if (
                own_path is not None
                and request.method in _WRITES
                and upstream.status < 300
                and upstream.content_type == "application/json"
                and not upstream.headers.get("Content-Encoding")
            ):
                answer = await upstream.read()
                self.waits.writes.wrote(own_path, answer)
                return web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    body=answer,
                    headers=CIMultiDict(relayed_headers(upstream.headers)),
                )
            response = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=CIMultiDict(relayed_headers(upstream.headers)),
            )
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass  # Helm closed the request (a watch it no longer needs), or the API server did
            return response


async def _json(response: aiohttp.ClientResponse) -> Any:
    if response.status != 200:
        raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
    return json.loads(await response.read())


async def _close_later(session: aiohttp.ClientSession, grace: float = 60.0) -> None:
    """Close a retired route's pool once the requests still on it (a Helm wait) had time to end."""
    try:
        await asyncio.sleep(grace)
    finally:
        await session.close()
