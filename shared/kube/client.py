"""KubeClient: an async dynamic client addressed by apiVersion/kind.

Every call names its Kubernetes verb (get, list, watch, create, patch, apply, delete) so the API
requests a controller makes are counted by verb.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from tide.shared.kube.config import Connection, load_connection
from tide.shared.kube.discovery import (
    ResourceInfo,
    group_version_path,
    parse_resource_list,
    preferred_group_versions,
)
from tide.shared.kube.errors import (
    KindNotServedError,
    KubeApiError,
    KubeUnreachableError,
    ResourceNotFoundError,
)
from tide.shared.kube.metrics import count_request
from tide.shared.kube.ratelimit import RateLimits

if TYPE_CHECKING:
    from tide.shared.kube.informer import Informer

log = logging.getLogger("tide.kube")

REQUEST_TIMEOUT = 60.0
LIST_PAGE_SIZE = 500
USER_AGENT = "tide"

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def _error_from(status: int, text: str) -> KubeApiError:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return KubeApiError(status, str(body.get("reason", "")), str(body.get("message", text)), body)
    return KubeApiError(status, "", text.strip()[:2000])


def service_account_user(namespace: str, name: str) -> str:
    """The user name the API server gives a ServiceAccount (and impersonation takes)."""
    return f"system:serviceaccount:{namespace}:{name}"


class KubeClient:
    """Async dynamic Kubernetes client (server-side apply, merge patch, status, watch)."""

    def __init__(
        self, connection: Connection, qps: float = 50.0, burst: int = 300, user_agent: str = USER_AGENT
    ) -> None:
        self.connection = connection
        self.host = connection.host
        self.impersonating: str | None = None
        """The user every request is made as (Impersonate-User), None for the connection's own."""
        self._root = self
        self._host_label = urlsplit(self.host).netloc
        self._limiter = RateLimits(qps, burst)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._discovery: dict[str, dict[str, ResourceInfo]] = {}
        self._discovery_lock = asyncio.Lock()
        self._preferred: dict[str, str] = {}  # kind named without apiVersion -> its apiVersion
        self._informers: dict[tuple[str, str, str | None, str | None], Informer] = {}
        self._identities: dict[str, KubeClient] = {}

    def as_service_account(self, namespace: str, name: str) -> KubeClient:
        """The client acting as a ServiceAccount through the API server's impersonation, one per
        identity and cached. It shares this client's connection pool, rate limit and discovery (the
        same for every user) but has its own watch caches: what a cache holds is what that identity
        may list. Only `Impersonate-User` is sent: for a ServiceAccount user the API server adds its
        groups (system:serviceaccounts, system:serviceaccounts:<ns>) itself, and naming groups would
        need `impersonate` on groups, a far wider grant than on serviceaccounts."""
        root = self._root
        user = service_account_user(namespace, name)
        client = root._identities.get(user)
        if client is None:
            client = KubeClient.__new__(KubeClient)
            client.__dict__.update(root.__dict__)
            client.impersonating = user
            client._informers = {}
            client._identities = {}
            root._identities[user] = client
        return client

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": JSON}
        if self.impersonating is not None:
            headers["Impersonate-User"] = self.impersonating
        return headers

    @classmethod
    async def from_kubeconfig(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        qps: float = 50.0,
        burst: int = 300,
        user_agent: str = USER_AGENT,
    ) -> KubeClient:
        """From --kubeconfig, else KUBECONFIG, else in-cluster, else ~/.kube/config."""
        return cls(await load_connection(kubeconfig, context), qps=qps, burst=burst, user_agent=user_agent)

    connect = from_kubeconfig

    def _http(self) -> aiohttp.ClientSession:
        if self._root is not self:
            return self._root._http()
        if self._session is None or self._session.closed:
            # Each watch holds a connection (HTTP/1.1): no pool limit, so watches never starve requests.
            connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context(), limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector, read_bufsize=2**21, headers={"User-Agent": self._user_agent}
            )
        return self._session

    async def close(self) -> None:
        """Stop this client's watch caches; the client that owns the connection pool (not an
        impersonating one) also closes the pool and every impersonating client's caches."""
        for informer in list(self._informers.values()):
            await informer.stop()
        self._informers.clear()
        if self._root is not self:
            self._root._identities.pop(self.impersonating or "", None)
            return
        for client in list(self._identities.values()):
            await client.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- transport -------------------------------------------------------------------------

    async def request(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        """One API call; returns the decoded JSON body, raises KubeApiError on a non-2xx status."""
        await self._limiter.acquire(path)
        headers = self._headers()
        headers.update(await self.connection.auth_headers())
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        code: int | str = "<error>"
        try:
            async with self._http().request(
                method,
                self.host + path,
                params=query,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=request_timeout),
                server_hostname=self.connection.tls_server_name,
            ) as resp:
                code = resp.status
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise KubeUnreachableError(err) from err
        finally:
            count_request(verb, method, self._host_label, code)
        if not 200 <= int(code) < 300:
            raise _error_from(int(code), text)
        return json.loads(text) if text else None

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, query: dict[str, str], read_timeout: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A watch: the open response, whose lines are events."""
        await self._limiter.acquire(path)
        headers = self._headers()
        headers.update(await self.connection.auth_headers())
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30, sock_read=read_timeout)
        code: int | str = "<error>"
        try:
            async with self._http().get(
                self.host + path,
                params=query,
                headers=headers,
                timeout=timeout,
                server_hostname=self.connection.tls_server_name,
            ) as resp:
                code = resp.status
                count_request("watch", "GET", self._host_label, code)
                if resp.status != 200:
                    raise _error_from(resp.status, await resp.text())
                yield resp
        except BaseException:
            if code == "<error>":
                count_request("watch", "GET", self._host_label, code)
            raise

    # --- discovery -------------------------------------------------------------------------

    async def _discover(self, api_version: str) -> dict[str, ResourceInfo]:
        try:
            document: dict[str, Any] | None = await self.request(
                "get", "GET", group_version_path(api_version)
            )
        except KubeApiError as err:
            if err.not_found:
                return {}
            raise
        resources: dict[str, ResourceInfo] = parse_resource_list(api_version, document or {})
        return resources

    async def resource(self, api_version: str, kind: str) -> ResourceInfo:
        """Discovery for one kind, cached; a miss refreshes its group/version once."""
        cached = self._discovery.get(api_version, {}).get(kind)
        if cached is not None:
            return cached
        async with self._discovery_lock:
            cached = self._discovery.get(api_version, {}).get(kind)
            if cached is None:
                self._discovery[api_version] = await self._discover(api_version)
                cached = self._discovery[api_version].get(kind)
        if cached is None:
            raise ResourceNotFoundError(api_version, kind)
        return cached

    def invalidate_discovery(self, api_version: str | None = None) -> None:
        self._preferred.clear()
        if api_version is None:
            self._discovery.clear()
        else:
            self._discovery.pop(api_version, None)

    async def preferred_api_version(self, kind: str) -> str:
        """The apiVersion of a kind named without one (Flux's optional apiVersion): the first API
        group serving the kind, core group first, at the group's preferred version. Cached; a miss
        reads discovery afresh once (a CRD installed since), then raises KindNotServedError."""
        cached = self._preferred.get(kind)
        if cached is not None:
            return cached
        async with self._discovery_lock:
            for fresh in (False, True):
                core = await self.request("get", "GET", "/api")
                groups = await self.request("get", "GET", "/apis")
                for api_version in preferred_group_versions(core or {}, groups or {}):
                    if fresh or api_version not in self._discovery:
                        self._discovery[api_version] = await self._discover(api_version)
                    if kind in self._discovery[api_version]:
                        self._preferred[kind] = api_version
                        return api_version
        raise KindNotServedError(kind)

    # --- verbs -----------------------------------------------------------------------------

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        info = await self.resource(api_version, kind)
        try:
            obj: dict[str, Any] | None = await self.request("get", "GET", info.path(namespace, name))
        except KubeApiError as err:
            if err.not_found:
                return None
            raise
        return obj

    async def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """All items (paged) and the list's resourceVersion, where a watch resumes."""
        info = await self.resource(api_version, kind)
        query: dict[str, str] = {"limit": str(LIST_PAGE_SIZE)}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        items: builtins.list[dict[str, Any]] = []
        while True:
            page = await self.request("list", "GET", info.path(namespace), query=query)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                items.append(item)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            query["continue"] = str(meta["continue"])

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        items, _ = await self.list_with_version(api_version, kind, namespace, label_selector, field_selector)
        return items

    async def create(
        self, obj: dict[str, Any], field_manager: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        info = await self.resource(obj["apiVersion"], obj["kind"])
        query = _write_query(field_manager, dry_run)
        created: dict[str, Any] = await self.request(
            "create", "POST", info.path(obj.get("metadata", {}).get("namespace")), query=query, body=obj
        )
        return created

    async def apply(
        self,
        obj: dict[str, Any],
        field_manager: str,
        force: bool = True,
        dry_run: bool = False,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply of a whole object under field_manager."""
        info = await self.resource(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata") or {}
        query = _write_query(field_manager, dry_run)
        if force:
            query["force"] = "true"
        applied: dict[str, Any] = await self.request(
            "apply",
            "PATCH",
            info.path(meta.get("namespace"), meta["name"], subresource),
            query=query,
            body=obj,
            content_type=APPLY_PATCH,
        )
        return applied

    async def patch_merge(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: dict[str, Any],
        field_manager: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        return await self._patch(
            api_version, kind, name, namespace, patch, MERGE_PATCH, field_manager, subresource, dry_run
        )

    async def patch_json(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        operations: builtins.list[dict[str, Any]],
        field_manager: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        return await self._patch(
            api_version, kind, name, namespace, operations, JSON_PATCH, field_manager, subresource, False
        )

    async def _patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        body: Any,
        content_type: str,
        field_manager: str | None,
        subresource: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        info = await self.resource(api_version, kind)
        patched: dict[str, Any] = await self.request(
            "patch",
            "PATCH",
            info.path(namespace, name, subresource),
            query=_write_query(field_manager, dry_run),
            body=body,
            content_type=content_type,
        )
        return patched

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: dict[str, Any],
        field_manager: str,
    ) -> dict[str, Any]:
        """Merge patch on the status subresource (Flux's status patches, field manager gotk-<controller>)."""
        return await self.patch_merge(
            api_version, kind, name, namespace, patch, field_manager=field_manager, subresource="status"
        )

    async def replace(
        self, obj: dict[str, Any], field_manager: str | None = None, subresource: str | None = None
    ) -> dict[str, Any]:
        info = await self.resource(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata") or {}
        replaced: dict[str, Any] = await self.request(
            "update",
            "PUT",
            info.path(meta.get("namespace"), meta["name"], subresource),
            query=_write_query(field_manager, False),
            body=obj,
        )
        return replaced

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str = "Background",
        dry_run: bool = False,
    ) -> bool:
        """Delete; False when it was already gone."""
        info = await self.resource(api_version, kind)
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if dry_run:
            body["dryRun"] = ["All"]
        try:
            await self.request("delete", "DELETE", info.path(namespace, name), body=body)
        except KubeApiError as err:
            if err.not_found:
                return False
            raise
        return True

    # --- watch cache -----------------------------------------------------------------------

    def informer(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        strip_managed_fields: bool = False,
    ) -> Informer:
        """The shared list+watch cache for these arguments, started on first use (await
        `informer.wait_synced()` before trusting `.get()`/`.items()`). strip_managed_fields (taken from
        whoever creates the informer first; the runtime does for each controller's own kind) drops
        metadata.managedFields from the cached objects: less memory where nobody reads them."""
        from tide.shared.kube.informer import Informer

        key = (api_version, kind, namespace, label_selector)
        informer = self._informers.get(key)
        if informer is None:
            informer = Informer(
                self,
                api_version,
                kind,
                namespace=namespace,
                label_selector=label_selector,
                strip_managed_fields=strip_managed_fields,
            )
            self._informers[key] = informer
        with contextlib.suppress(RuntimeError):  # no running loop: started by wait_synced()/start()
            asyncio.get_running_loop()
            informer.start()
        return informer


def _write_query(field_manager: str | None, dry_run: bool) -> dict[str, str]:
    query: dict[str, str] = {}
    if field_manager:
        query["fieldManager"] = field_manager
    if dry_run:
        query["dryRun"] = "All"
    return query


def watch_timeout_seconds() -> int:
    """client-go's random watch timeout in [5m, 10m), so watches of many informers do not line up."""
    return random.randint(300, 599)
