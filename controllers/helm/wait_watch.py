"""Helm's waits read from one watch per resource, not from one new watch per install.

Helm's kstatus wait opens a watch of every kind it installed, in the release's namespace, at every
install, upgrade and hook (client-go's watch-list: `sendInitialEvents=true`), scoped by the API
proxy to the release's origin labels. At 1,000 releases that is 4,000 watches the API server sets up
with a consistent read each, and 4,000 TLS handshakes: a watch Helm drops cannot give its
connection back. The proxy instead keeps one watch per resource, cluster-wide, of the objects Tide
released (those carrying the origin labels), and answers Helm's watch-lists from it: the objects of
the release now, the bookmark that ends the initial events, then the release's events as they come.

Fresh enough, as the API server's consistent read is: every object this proxy wrote for a release
(its PATCH or POST answered with a resourceVersion) must have reached the shared watch before a wait
reads it; otherwise an upgrade's wait could see the previous generation, ready, and end early. What
other clients wrote is seen when its event arrives, as a wait sees anything that changes later.
Anything the shared watch cannot answer (not started, failed, too slow to catch up) goes to the API
server as before. The state is kept by pure classes (Collection, Writes); WaitWatches does the I/O.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import Counter

from tide.controllers.helm.postrender import ORIGIN_GROUP
from tide.shared.kube.config import Connection, KubeconfigError

ORIGIN_NAME_LABEL = f"{ORIGIN_GROUP}/name"
ORIGIN_NAMESPACE_LABEL = f"{ORIGIN_GROUP}/namespace"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
REQUIRED_FOR = 120.0
"""Seconds a write's resourceVersion stays required of the shared watch (it arrives in far less)."""
IDLE = 300.0
"""Seconds a shared watch with no wait reading it is kept before it is stopped and forgotten."""

WAIT_WATCHES = Counter(
    "tide_helm_wait_watches_total",
    "Watches Helm's waits opened, by what answered them: shared_watch (the controller's one watch "
    "of the resource) or api_server (a watch of their own).",
    ["answered_by"],
)

_RESOURCE = r"^/(?P<prefix>api/[^/]+|apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)"
_COLLECTION = re.compile(_RESOURCE + "$")
_OBJECT = re.compile(_RESOURCE + "/(?P<name>[^/]+)$")

Origin = tuple[str, str]
"""A HelmRelease as (namespace, name)."""
Key = tuple[str, str]
"""An object as (namespace or "", name)."""


def collection_of(path: str) -> tuple[str, str | None] | None:
    """The cluster-wide collection a collection path reads, and its namespace (pure):
    `/apis/apps/v1/namespaces/a/deployments` is (`/apis/apps/v1/deployments`, `a`)."""
    match = _COLLECTION.match(path)
    if not match:
        return None
    return f"/{match['prefix']}/{match['resource']}", match["ns"]


def object_of(path: str) -> tuple[str, Key] | None:
    """The cluster-wide collection and key of an object path (pure); a subresource is not an object."""
    match = _OBJECT.match(path)
    if not match:
        return None
    return f"/{match['prefix']}/{match['resource']}", (match["ns"] or "", match["name"])


def is_watch_list(query: Mapping[str, str]) -> bool:
    """Whether a request is client-go's watch-list from now: initial events, then changes (pure)."""
    return (
        query.get("watch") in ("1", "true")
        and query.get("sendInitialEvents") == "true"
        and not query.get("resourceVersion")
    )


def origin_of(obj: Mapping[str, Any]) -> Origin | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(ORIGIN_NAME_LABEL), labels.get(ORIGIN_NAMESPACE_LABEL)
    if isinstance(name, str) and isinstance(namespace, str):
        return namespace, name
    return None


def resource_version(obj: Mapping[str, Any]) -> int | None:
    """An object's resourceVersion as a number (etcd's), or None: then nothing is compared."""
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion", ""))
    except (TypeError, ValueError):
        return None


def watch_event(kind: str, body: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + body + b"}\n"


@dataclass
class Entry:
    version: int
    origin: Origin | None
    body: bytes


@dataclass(eq=False)
class Reader:
    """One of Helm's waits reading a release's objects of one resource (in one namespace, or all)."""

    origin: Origin
    namespace: str | None
    deliver: Callable[[bytes | None], None]
    """Takes a watch event line; None ends the wait's stream (the shared watch lost its place)."""

    def sees(self, key: Key, origin: Origin | None) -> bool:
        return origin == self.origin and (self.namespace is None or key[0] == self.namespace)


@dataclass
class Collection:
    """The released objects of one resource, cluster-wide, as one watch sees them."""

    path: str
    kind: str = ""
    api_version: str = ""
    version: int = 0
    """The newest resourceVersion the watch reached (events and bookmarks)."""
    synced: bool = False
    objects: dict[Key, Entry] = field(default_factory=dict)
    by_origin: dict[Origin, set[Key]] = field(default_factory=dict)
    """The keys of each release's objects: a wait starts from its release's alone."""
    readers: dict[Origin, set[Reader]] = field(default_factory=dict)
    idle_since: float | None = None

    def listed(self, list_kind: str, api_version: str, version: int, items: list[dict[str, Any]]) -> None:
        """A fresh list: everything known before is replaced, and readers start again."""
        self.kind = list_kind.removesuffix("List")
        self.api_version = api_version
        self.objects, self.by_origin = {}, {}
        for item in items:
            # a list's items carry no kind (the list does); a watch's objects do, as Helm expects
            put = self._put({"kind": self.kind, "apiVersion": api_version, **item})
            if put is not None:
                self._keep(put[0], put[2])
        self.version = version
        self.synced = True
        self.drop_readers()

    def lost(self) -> None:
        """The watch failed: nothing here can be trusted until the next list."""
        self.synced = False
        self.objects, self.by_origin = {}, {}
        self.drop_readers()

    def drop_readers(self) -> None:
        for readers in self.readers.values():
            for reader in readers:
                reader.deliver(None)
        self.readers = {}

    def _put(self, obj: dict[str, Any]) -> tuple[Key, Entry | None, Entry] | None:
        """An object's key, what was kept for it, and what would be kept now (not kept yet)."""
        metadata = obj.get("metadata") or {}
        version = resource_version(obj)
        if version is None or not isinstance(metadata.get("name"), str):
            return None
        key = (metadata.get("namespace") or "", metadata["name"])
        entry = Entry(version, origin_of(obj), json.dumps(obj, separators=(",", ":")).encode())
        return key, self.objects.get(key), entry

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        """One event of the shared watch: kept, and passed to the waits that see it (an object that
        leaves a release's labels is DELETED for its waits, one that enters is ADDED)."""
        version = resource_version(obj)
        if version is not None:
            self.version = max(self.version, version)
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: only the version moves
        put = self._put(obj)
        if put is None:
            return
        key, before, entry = put
        if kind == "DELETED":
            self._drop(key)
        else:
            self._keep(key, entry)
        origins = {o for o in (before.origin if before else None, entry.origin) if o is not None}
        for origin in origins:
            for reader in self.readers.get(origin, ()):
                saw = before is not None and reader.sees(key, before.origin)
                sees = reader.sees(key, entry.origin)
                if kind == "DELETED":
                    if saw or sees:
                        reader.deliver(watch_event("DELETED", entry.body))
                elif saw and sees:
                    reader.deliver(watch_event("MODIFIED", entry.body))
                elif sees:
                    reader.deliver(watch_event("ADDED", entry.body))
                elif saw:
                    reader.deliver(watch_event("DELETED", entry.body))

    def _keep(self, key: Key, entry: Entry) -> None:
        self._drop(key)
        self.objects[key] = entry
        if entry.origin is not None:
            self.by_origin.setdefault(entry.origin, set()).add(key)

    def _drop(self, key: Key) -> None:
        entry = self.objects.pop(key, None)
        if entry is not None and entry.origin is not None:
            keys = self.by_origin.get(entry.origin)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_origin[entry.origin]

    def open(self, reader: Reader) -> list[bytes]:
        """Start a reader: its initial events (the release's objects now, then the bookmark that
        ends them); what changes later is delivered to it."""
        events = [
            watch_event("ADDED", self.objects[key].body)
            for key in sorted(self.by_origin.get(reader.origin, ()))
            if reader.sees(key, reader.origin)
        ]
        bookmark = {
            "kind": self.kind,
            "apiVersion": self.api_version,
            "metadata": {
                "resourceVersion": str(self.version),
                "annotations": {INITIAL_EVENTS_END: "true"},
            },
        }
        events.append(watch_event("BOOKMARK", json.dumps(bookmark, separators=(",", ":")).encode()))
        self.readers.setdefault(reader.origin, set()).add(reader)
        self.idle_since = None
        return events

    def close(self, reader: Reader, now: float) -> None:
        readers = self.readers.get(reader.origin)
        if readers is not None:
            readers.discard(reader)
            if not readers:
                del self.readers[reader.origin]
        if not self.readers:
            self.idle_since = now

    def is_idle(self, now: float) -> bool:
        return self.idle_since is not None and now - self.idle_since >= IDLE


@dataclass
class Writes:
    """The resourceVersions of released objects this proxy wrote lately, by collection and release:
    a release's wait reads a shared watch only once it reached that release's writes (other
    releases' writes, which never stop coming while many install, do not hold it)."""

    clock: Callable[[], float]
    pending: dict[tuple[str, Origin], tuple[int, float]] = field(default_factory=dict)
    """By (collection, release): the newest resourceVersion written, and when (a watch that reached
    it holds every earlier write too)."""
    swept_at: float = 0.0

    def wrote(self, path: str, body: bytes) -> None:
        """An answered write (its path and response body): kept if it is of a released object."""
        target = object_of(path)
        if target is None:
            return
        try:
            obj = json.loads(body)
        except ValueError:
            return  # not JSON (Helm's storage asks for protobuf): not a released object either
        origin = origin_of(obj) if isinstance(obj, dict) else None
        version = resource_version(obj) if origin is not None else None
        if origin is not None and version is not None:
            slot, now = (target[0], origin), self.clock()
            self.pending[slot] = (max(version, self.pending.get(slot, (0, 0.0))[0]), now)
            if now - self.swept_at > REQUIRED_FOR:
                self.swept_at = now
                for old in list(self.pending):
                    self._forget(old, now, reached=-1)

    def reached(self, collection: Collection, origin: Origin) -> bool:
        """Whether the shared watch has seen every recent write of a release's objects of its
        resource (forgetting them once it has, or once they are too old to matter)."""
        return self._forget((collection.path, origin), self.clock(), reached=collection.version)

    def _forget(self, slot: tuple[str, Origin], now: float, reached: int) -> bool:
        """Forget a slot's writes if a watch at version `reached` holds them or they are too old (a
        release whose wait is disabled never asks for them); whether nothing is left to wait for."""
        version, at = self.pending.get(slot, (0, now))
        if reached >= version or now - at > REQUIRED_FOR:
            self.pending.pop(slot, None)
            return True
        return False


UPSTREAM_ERRORS = (
    aiohttp.ClientError,
    OSError,
    ssl.SSLError,
    KubeconfigError,
    ValueError,
    KeyError,
    TimeoutError,
)
"""What a request to the API server may end in that a watch survives by starting again."""
FRESH_WAIT = 5.0
"""Seconds a wait waits for the shared watch to reach its release's writes before it asks the API
server itself."""
RETRY = 30.0
"""Seconds a resource whose shared watch failed is read from the API server before it is tried again."""
WATCH_SECONDS = 60
"""How long one request of a shared watch lasts: between two, an idle watch is stopped."""
_LIST_PAGE = 500


async def watch_lines(response: aiohttp.ClientResponse) -> AsyncIterator[list[bytes]]:
    """The lines of a watch response, a batch per chunk read (one line may span several chunks)."""
    pending = b""
    async for chunk in response.content.iter_any():
        *lines, pending = (pending + chunk).split(b"\n")
        yield [line for line in lines if line.strip()]


class WaitWatches:
    """The shared watches, one per resource Helm waits on, on the controller's own connection."""

    def __init__(
        self,
        connection: Connection,
        session: Callable[[], aiohttp.ClientSession],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self._session = session
        self._clock = clock
        self.collections: dict[str, Collection] = {}
        self.writes = Writes(clock)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._moved: dict[str, asyncio.Event] = {}
        self._failed_until: dict[str, float] = {}

    async def serve(
        self, request: web.Request, path: str, origin: Origin, *, lasting: float
    ) -> web.StreamResponse | None:
        """Answer a watch-list of Helm's wait (`path` a collection, scoped to `origin`, for `lasting`
        seconds) from the shared watch; None when it cannot: the API server answers then."""
        target = collection_of(path)
        json_first = request.headers.get("Accept", "").split(",")[0].strip() == "application/json"
        collection = await self._fresh(target[0], origin) if target is not None and json_first else None
        WAIT_WATCHES.labels(answered_by="api_server" if collection is None else "shared_watch").inc()
        if collection is None or target is None:
            return None
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        reader = Reader(origin, target[1], queue.put_nowait)
        initial = collection.open(reader)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + lasting
        try:
            await response.prepare(request)
            await response.write(b"".join(initial))
            while (remaining := deadline - loop.time()) > 0:
                try:
                    lines = [await asyncio.wait_for(queue.get(), remaining)]
                except TimeoutError:
                    break
                while not queue.empty():
                    lines.append(queue.get_nowait())
                await response.write(b"".join(line for line in lines if line is not None))
                if None in lines:
                    break  # the shared watch started again: the wait does too
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientError):
            pass  # Helm's wait ended
        finally:
            collection.close(reader, self._clock())
        return response

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _fresh(self, path: str, origin: Origin) -> Collection | None:
        """The shared watch of a resource once it reached the release's writes (started if need be)."""
        if self._failed_until.get(path, 0.0) > self._clock():
            return None
        collection = self.collections.get(path)
        if collection is None:
            collection = self.collections[path] = Collection(path, idle_since=self._clock())
            self._moved[path] = asyncio.Event()
            self._tasks[path] = asyncio.get_running_loop().create_task(
                self._follow(collection), name=f"wait watch {path}"
            )
        deadline = self._clock() + FRESH_WAIT
        while not (collection.synced and self.writes.reached(collection, origin)):
            moved = self._moved.get(path)
            remaining = deadline - self._clock()
            if moved is None or self.collections.get(path) is not collection or remaining <= 0:
                return None
            try:
                await asyncio.wait_for(moved.wait(), remaining)
            except TimeoutError:
                return None
        return collection

    def _wake(self, path: str) -> None:
        moved = self._moved.get(path)
        if moved is not None:
            moved.set()
            self._moved[path] = asyncio.Event()

    async def _follow(self, collection: Collection) -> None:
        """List, then watch, a resource's released objects until no wait read them for IDLE seconds."""
        path = collection.path
        try:
            while True:
                await self._list(collection)
                self._wake(path)
                while await self._watch(collection):
                    if collection.is_idle(self._clock()):
                        return
        except UPSTREAM_ERRORS:
            self._failed_until[path] = self._clock() + RETRY  # e.g. not allowed to watch cluster-wide
        finally:
            collection.lost()
            del self.collections[path], self._tasks[path]
            self._wake(path)
            del self._moved[path]

    async def _list(self, collection: Collection) -> None:
        params = {"labelSelector": ORIGIN_NAME_LABEL, "limit": str(_LIST_PAGE)}
        items: list[dict[str, Any]] = []
        while True:
            page = await self._get(collection.path, params)
            items.extend(page.get("items") or [])
            version = int(page["metadata"]["resourceVersion"])
            params["continue"] = page["metadata"].get("continue") or ""
            if not params["continue"]:
                break
        collection.listed(str(page["kind"]), str(page["apiVersion"]), version, items)

    async def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        headers = {"Accept": "application/json", **await self.connection.auth_headers()}
        timeout = aiohttp.ClientTimeout(total=60)
        async with self._session().get(
            self.connection.host + path, params=params, headers=headers, timeout=timeout
        ) as got:
            if got.status != 200:
                raise aiohttp.ClientResponseError(got.request_info, (), status=got.status)
            document = json.loads(await got.read())
        if not isinstance(document, dict):
            raise ValueError("not a list")
        return document

    async def _watch(self, collection: Collection) -> bool:
        """One watch request from where the collection is; False when it must be listed again (the
        API server no longer has that version: 410 Gone)."""
        params = {
            "watch": "1",
            "labelSelector": ORIGIN_NAME_LABEL,
            "resourceVersion": str(collection.version),
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        headers = {"Accept": "application/json", **await self.connection.auth_headers()}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=WATCH_SECONDS + 30)
        async with self._session().get(
            self.connection.host + collection.path, params=params, headers=headers, timeout=timeout
        ) as watch:
            if watch.status == 410:
                return False
            if watch.status != 200:
                raise aiohttp.ClientResponseError(watch.request_info, (), status=watch.status)
            async for lines in watch_lines(watch):
                for line in lines:
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        if obj.get("code") == 410:
                            return False
                        raise ValueError(f"watch error: {obj.get('message')}")
                    collection.event(str(event.get("type")), obj)
                self._wake(collection.path)
        return True
