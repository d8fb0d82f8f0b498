"""The CLI's connection to the cluster: tide.shared.kube.KubeClient, with errors turned into CliErrors
that say what to do next, brief retries of transient read failures, and the watch the CLI needs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from tide.cli.errors import EXIT_API, EXIT_USAGE, CliError
from tide.shared.kube import KubeClient
from tide.shared.kube.discovery import ResourceInfo
from tide.shared.kube.errors import KubeApiError, KubeUnreachableError, ResourceNotFoundError

Obj = dict[str, Any]
T = TypeVar("T")

_TRANSIENT = (429, 500, 503, 504)

__all__ = ["ClusterClient", "ResourceInfo", "api_error", "connect"]


def api_error(exc: KubeApiError, what: str) -> CliError:
    if isinstance(exc, KubeUnreachableError):  # as main() says it for a connection that fails outright
        hint = "is the cluster running? check --kubeconfig/--context, then retry"
        return CliError(f"cannot reach the Kubernetes API: {exc.detail}", hint, EXIT_API)
    hint = ""
    if exc.status == 403 and " cannot " in exc.message:
        hint = "your kubeconfig user lacks the permission; use a context with more rights (--context)"
    elif exc.status == 401:
        hint = "your credentials were refused; refresh the kubeconfig or pick another --context"
    return CliError(f"{what}: {exc.message}", hint, EXIT_API)


def _not_served(api_version: str, kind: str) -> CliError:
    return CliError(
        f"the cluster does not serve {kind} ({api_version})",
        "install the CRDs first: `tide install` (or `tide install --crds-only`)",
        EXIT_USAGE,
    )


async def _with_retry(call: Callable[[], Awaitable[T]]) -> T:
    """Reads retry briefly on transient answers ('storage is (re)initializing' after a CRD install)."""
    delay = 0.2
    for attempt in range(8):
        try:
            return await call()
        except (ResourceNotFoundError, KubeUnreachableError):
            raise
        except KubeApiError as exc:
            if exc.status not in _TRANSIENT or attempt == 7:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


class ClusterClient:
    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def close(self) -> None:
        await self.kube.close()

    async def resource(self, api_version: str, kind: str) -> ResourceInfo:
        try:
            return await self.kube.resource(api_version, kind)
        except ResourceNotFoundError:
            # Discovery may be stale right after a CRD install: ask once more, fresh.
            self.kube.invalidate_discovery(api_version)
            try:
                return await self.kube.resource(api_version, kind)
            except ResourceNotFoundError:
                raise _not_served(api_version, kind) from None
        except KubeApiError as exc:
            raise api_error(exc, f"discovering {kind}") from None

    async def has_resource(self, api_version: str, kind: str) -> bool:
        try:
            await self.resource(api_version, kind)
            return True
        except CliError:
            return False

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        info = await self.resource(api_version, kind)
        try:
            return await _with_retry(
                lambda: self.kube.get(api_version, kind, name, namespace if info.namespaced else None)
            )
        except KubeApiError as exc:
            raise api_error(exc, f"reading {kind} {name}") from None

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        info = await self.resource(api_version, kind)
        ns = namespace if info.namespaced else None
        try:
            items = await _with_retry(
                lambda: self.kube.list(api_version, kind, ns, label_selector, field_selector)
            )
        except KubeApiError as exc:
            raise api_error(exc, f"listing {kind}") from None
        for item in items:  # list items come without apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return list(items)

    async def apply(self, obj: Obj, field_manager: str, force: bool = True, dry_run: bool = False) -> Obj:
        info = await self.resource(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata") or {}
        if not info.namespaced and meta.get("namespace"):
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "namespace"}}
        try:
            return await self.kube.apply(obj, field_manager, force=force, dry_run=dry_run)
        except KubeApiError as exc:
            raise api_error(exc, f"applying {obj['kind']}/{meta.get('name')}") from None

    async def patch_merge(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: Obj
    ) -> Obj:
        info = await self.resource(api_version, kind)
        try:
            return await self.kube.patch_merge(
                api_version, kind, name, namespace if info.namespaced else None, patch
            )
        except KubeApiError as exc:
            if exc.status == 404:
                raise CliError(
                    f"{kind} {name} not found in namespace {namespace}",
                    "list them with `tide get` or pass the right namespace with -n",
                    EXIT_USAGE,
                ) from None
            raise api_error(exc, f"patching {kind}/{name}") from None

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        info = await self.resource(api_version, kind)
        try:
            return await self.kube.delete(
                api_version, kind, name, namespace if info.namespaced else None, propagation
            )
        except KubeApiError as exc:
            raise api_error(exc, f"deleting {kind}/{name}") from None

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        name: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """One watch (starting with the current objects as ADDED), ending when the server closes it."""
        info = await self.resource(api_version, kind)
        query = {"watch": "1", "allowWatchBookmarks": "false"}
        if name:
            field_selector = f"metadata.name={name}"
        if field_selector:
            query["fieldSelector"] = field_selector
        if timeout_seconds:
            query["timeoutSeconds"] = str(timeout_seconds)
        path = info.path(namespace if info.namespaced else None)
        try:
            async with self.kube.stream(path, query, read_timeout=(timeout_seconds or 300) + 30) as resp:
                async for raw_line in resp.content:
                    line = raw_line.strip()
                    if not line:
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        return  # e.g. 410 Gone: the caller starts a new watch
                    obj.setdefault("apiVersion", api_version)
                    obj.setdefault("kind", kind)
                    yield str(event.get("type")), obj
        except KubeApiError as exc:
            raise api_error(exc, f"watching {kind}") from None
        except (TimeoutError, aiohttp.ClientPayloadError):
            return

    async def server_version(self) -> Obj:
        try:
            data = await self.kube.request("get", "GET", "/version")
        except KubeApiError as exc:
            raise api_error(exc, "reading the API server version") from None
        return dict(data or {})


async def connect(kubeconfig: str | None = None, context: str | None = None) -> ClusterClient:
    """Kubeconfig from --kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config."""
    if kubeconfig and not await asyncio.to_thread(Path(kubeconfig).exists):
        raise CliError(
            f"no kubeconfig at {kubeconfig}", "point --kubeconfig at your cluster's kubeconfig", EXIT_USAGE
        )
    try:
        kube = await KubeClient.from_kubeconfig(kubeconfig, context, user_agent="tide-cli")
    except (
        Exception
    ) as exc:  # kubeconfig parsing raises several kinds (ConfigException, RuntimeError, OSError)
        raise CliError(
            f"cannot load the kubeconfig: {exc}",
            "check --kubeconfig/KUBECONFIG and --context (kubectl config get-contexts)",
            EXIT_USAGE,
        ) from None
    return ClusterClient(kube)
