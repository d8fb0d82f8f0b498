"""Informer: list + watch + a local cache of one kind.

Resumes a dropped watch from the last resourceVersion it saw (bookmarks included), relists when the
API server answers 410 Gone, and retries a lost connection with backoff instead of failing. Handlers
are called with (event_type, obj, old) where event_type is ADDED, MODIFIED or DELETED.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from tide.shared.kube.errors import KubeApiError, ResourceNotFoundError

if TYPE_CHECKING:
    from tide.shared.kube.client import KubeClient

log = logging.getLogger("tide.kube.informer")

Handler = Callable[[str, dict[str, Any], dict[str, Any] | None], Awaitable[None] | None]
CacheKey = tuple[str, str]
IndexFunc = Callable[[dict[str, Any]], Iterable[Hashable]]

RETRY_MIN = 0.8
RETRY_MAX = 30.0
# A missing CRD is looked for again this often (one discovery request): installing the CRDs is the
# user's next step, and the controller should start working right after it.
MISSING_RETRY = 3.0


class Gone(Exception):
    """The watch's resourceVersion is too old (410): the cache must be rebuilt from a list."""


def crd_name(api_version: str, kind: str) -> str | None:
    """The CustomResourceDefinition that serves one of Tide's kinds (`gitrepositories.source.toolkit.
    fluxcd.io`), None for kinds Tide has no model of (a user's own CRDs, applied by a Kustomization)."""
    from tide.shared.api import model_for

    model = model_for(api_version, kind)
    return f"{model.plural}.{model.group}" if model is not None else None


def missing_crd_message(api_version: str, kind: str) -> str:
    name = crd_name(api_version, kind)
    if name is None:
        return f"the API server serves no {kind} in {api_version} (its CRD is not installed); waiting for it"
    return (
        f"CustomResourceDefinition {name} is not installed: install Tide's CRDs "
        "with `tide install --crds-only` (or the Helm chart charts/tide); waiting for it"
    )


def object_key(obj: dict[str, Any]) -> CacheKey:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Informer:
    def __init__(
        self,
        client: KubeClient,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        strip_managed_fields: bool = False,
    ) -> None:
        self.client = client
        self.strip_managed_fields = strip_managed_fields
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self._cache: dict[CacheKey, dict[str, Any]] = {}
        self._indexes: dict[str, Index] = {}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self.resource_version = ""
        self.relists = 0
        self.reconnects = 0
        self.missing = False  # the API server does not serve the kind (its CRD is not installed)
        self.forbidden: KubeApiError | None = None
        """The API server's 403 to the last list: this identity may not list the kind here."""
        self._attempted = asyncio.Event()  # a first list answered, with the objects or a refusal

    # --- cache -----------------------------------------------------------------------------

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._cache.get((namespace or "", name))

    def items(self) -> list[dict[str, Any]]:
        return list(self._cache.values())

    def keys(self) -> list[CacheKey]:
        return list(self._cache)

    def add_index(self, name: str, values: IndexFunc) -> None:
        """Keep the cached objects findable by the values `values(obj)` gives (client-go's Indexer):
        which Kustomizations read a source, which depend on an object. A lookup then costs what it
        finds, where a scan of the cache on every event costs the number of objects."""
        if name not in self._indexes:
            self._indexes[name] = Index(values, self._cache)

    def by_index(self, name: str, value: Hashable) -> list[dict[str, Any]]:
        return [self._cache[key] for key in self._indexes[name].keys_of(value) if key in self._cache]

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def add_handler(self, handler: Handler) -> None:
        """Called for every change; for objects already cached, called now with ADDED."""
        self._handlers.append(handler)
        for obj in list(self._cache.values()):
            self._call(handler, "ADDED", obj, None)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"informer-{self.kind}-{self.namespace or '*'}"
            )

    async def wait_synced(self, seconds: float | None = None) -> None:
        self.start()
        await asyncio.wait_for(self._synced.wait(), seconds)

    async def wait_listed(self, seconds: float | None = None) -> bool:
        """Wait for the first list's answer: True when the cache is synced, False when the API
        server refused the list (403, see `forbidden`). An identity without the right to list is
        told at once instead of after a sync timeout."""
        self.start()
        if not self.synced:
            await asyncio.wait_for(self._attempted.wait(), seconds)
        return self.synced

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- list and watch --------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_MIN
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
                delay = RETRY_MIN
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("watch of %s expired (410 Gone), relisting", self.kind)
                need_list = True
            except ResourceNotFoundError:
                # One line when the CRD goes missing, then quiet polling until it is installed.
                if not self.missing:
                    # Tide cannot work without its own CRDs; a user's kind may simply come later.
                    tide_kind = crd_name(self.api_version, self.kind) is not None
                    level = logging.ERROR if tide_kind else logging.WARNING
                    log.log(level, missing_crd_message(self.api_version, self.kind))
                self.missing = True
                need_list = True
                await asyncio.sleep(MISSING_RETRY)
            except (TimeoutError, KubeApiError, aiohttp.ClientError, OSError, ValueError) as err:
                if isinstance(err, KubeApiError) and err.status == 403 and need_list:
                    self.forbidden = err
                    self._attempted.set()
                if isinstance(err, KubeApiError) and err.not_found:
                    # The CRD was deleted under a cached discovery: look again, so the next try
                    # says the CRD is missing instead of warning about 404s.
                    self.client.invalidate_discovery(self.api_version)
                self.reconnects += 1
                if isinstance(err, KubeApiError) and err.status == 429:
                    # The API server's own back-pressure, e.g. a new CRD's watch cache still
                    # initializing: expected, not worth a warning.
                    log.info("watch of %s deferred, retrying in %.1fs: %s", self.kind, delay, err)
                else:
                    log.warning("watch of %s interrupted, retrying in %.1fs: %s", self.kind, delay, err)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, RETRY_MAX)
            except Exception:
                log.exception("informer for %s failed, retrying in %.1fs", self.kind, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _list(self) -> None:
        items, version = await self.client.list_with_version(
            self.api_version, self.kind, self.namespace, self.label_selector, self.field_selector
        )
        if self.missing:
            log.info("%s in %s is served now: watching it", self.kind, self.api_version)
            self.missing = False
        self.forbidden = None
        self.relists += 1
        if self.strip_managed_fields:
            for item in items:
                (item.get("metadata") or {}).pop("managedFields", None)
        fresh = {object_key(item): item for item in items}
        old_cache, self._cache = self._cache, fresh
        for index in self._indexes.values():
            index.rebuild(fresh)
        self.resource_version = version
        for key, obj in fresh.items():
            old = old_cache.get(key)
            if old is None:
                self._emit("ADDED", obj, None)
            elif resource_version(old) != resource_version(obj):
                self._emit("MODIFIED", obj, old)
        for key, old in old_cache.items():
            if key not in fresh:
                self._emit("DELETED", old, old)
        self._synced.set()
        self._attempted.set()

    async def _watch(self) -> None:
        from tide.shared.kube.client import watch_timeout_seconds

        info = await self.client.resource(self.api_version, self.kind)
        timeout_seconds = watch_timeout_seconds()
        query = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            "resourceVersion": self.resource_version,
        }
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        if self.field_selector:
            query["fieldSelector"] = self.field_selector
        try:
            async with self.client.stream(
                info.path(self.namespace), query, read_timeout=timeout_seconds + 30
            ) as resp:
                async for line in resp.content:
                    if line.strip():
                        self._on_event(json.loads(line))
        except KubeApiError as err:
            # The expiry as the watch request's own HTTP status (not an ERROR event in the stream):
            # resuming from the same resourceVersion would be refused for ever.
            if err.gone:
                raise Gone() from err
            raise

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410 or obj.get("reason") in ("Expired", "Gone"):
                raise Gone()
            raise KubeApiError(
                int(obj.get("code") or 500), str(obj.get("reason", "")), str(obj.get("message", ""))
            )
        version = resource_version(obj)
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        if self.strip_managed_fields:
            (obj.get("metadata") or {}).pop("managedFields", None)
        key = object_key(obj)
        old = self._cache.get(key)
        if kind == "DELETED":
            self._cache.pop(key, None)
            for index in self._indexes.values():
                index.update(key, old, None)
            self._emit("DELETED", obj, old)
        elif kind in ("ADDED", "MODIFIED"):
            self._cache[key] = obj
            for index in self._indexes.values():
                index.update(key, old, obj)
            self._emit("ADDED" if old is None else "MODIFIED", obj, old)

    def _emit(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        for handler in self._handlers:
            self._call(handler, event_type, obj, old)

    def _call(
        self, handler: Handler, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        try:
            result = handler(event_type, obj, old)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
        except Exception:
            log.exception("informer handler for %s failed", self.kind)


class Index:
    """One named index of an informer's cache: value -> keys of the objects that give it."""

    def __init__(self, values: IndexFunc, cache: Mapping[CacheKey, dict[str, Any]]) -> None:
        self._values = values
        self._keys: dict[Hashable, set[CacheKey]] = {}
        self.rebuild(cache)

    def _of(self, obj: dict[str, Any] | None) -> set[Hashable]:
        if obj is None:
            return set()
        try:
            return set(self._values(obj))
        except (AttributeError, KeyError, TypeError, ValueError):  # a malformed object: in no entry
            return set()

    def rebuild(self, cache: Mapping[CacheKey, dict[str, Any]]) -> None:
        self._keys = {}
        for key, obj in cache.items():
            for value in self._of(obj):
                self._keys.setdefault(value, set()).add(key)

    def update(self, key: CacheKey, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        before, after = self._of(old), self._of(new)
        for value in before - after:
            keys = self._keys.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys[value]
        for value in after - before:
            self._keys.setdefault(value, set()).add(key)

    def keys_of(self, value: Hashable) -> list[CacheKey]:
        return sorted(self._keys.get(value, ()))
