"""The API server's discovery documents as the Helm SDK reads them, kept between Helm actions.

Helm asks for the whole discovery (`/version`, `/api`, `/apis`, the `/openapi/v3` index) again at
every install and upgrade: it invalidates its client's cache before it reads the cluster's
capabilities. Those documents change only when an API is added or removed: a CustomResourceDefinition
or an APIService written, established or deleted. The API proxy watches both kinds and answers Helm's
discovery requests from here while nothing changed (pure logic here, the watches in apiproxy).

Fresh means all of:
- both watches are running (a watch that failed or reconnected may have missed a change);
- no change for SETTLE seconds: the API server publishes a new CRD's discovery a moment after the
  CRD's own events, so a document read right after a change may predate it and is not kept;
- the document was read after the last change (a read that overlapped one is not kept).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DISCOVERY_PATHS = frozenset({"/version", "/api", "/apis", "/openapi/v3", "/openapi/v2"})
"""Documents that change only with the set of APIs served (not the group/version documents Helm
reads once per kind, nor the openapi schemas it already caches by their hash)."""
API_KINDS = ("apiextensions.k8s.io/v1/customresourcedefinitions", "apiregistration.k8s.io/v1/apiservices")
"""What adds or removes an API (group/version/resource), watched to know when discovery changes."""
FIELD_VALIDATION_MINOR = 27
"""The Kubernetes 1.x from which every built-in and CRD-served API validates fields itself
(server-side field validation, GA in 1.27)."""
SETTLE = 5.0
"""Seconds after a change during which discovery is read from the API server and not kept."""
_API_WRITES = tuple(f"/apis/{kind.rsplit('/', 1)[0]}/" for kind in API_KINDS)


@dataclass(frozen=True)
class Document:
    """One discovery response as the API server sent it (body possibly compressed, as relayed)."""

    body: bytes
    headers: tuple[tuple[str, str], ...]


def server_minor(version: Mapping[str, Any]) -> int | None:
    """The 1.x minor of a /version document (`"34"`, `"34+"` from some distributions)."""
    if str(version.get("major", "")) != "1":
        return None
    digits = ""
    for char in str(version.get("minor", "")):
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def is_discovery_read(method: str, path: str) -> bool:
    return method == "GET" and path in DISCOVERY_PATHS


def changes_apis(method: str, path: str) -> bool:
    """A write Helm sends that may add or remove an API: a CRD or APIService in a chart's templates."""
    return method not in ("GET", "HEAD", "OPTIONS") and path.startswith(_API_WRITES)


@dataclass
class DiscoveryCache:
    """Discovery documents per (route, path, Accept), kept while no API changed. `clock` is
    monotonic seconds."""

    clock: Callable[[], float]
    settle: float = SETTLE
    watching: set[str] = field(default_factory=set)
    """The API_KINDS whose watch is running now."""
    generation: int = 0
    """Counts changes: a read that started in an older generation is not kept."""
    server_minor: int | None = None
    """The API server's 1.x minor version (None: not read yet)."""
    aggregated: dict[str, bool] | None = None
    """Each APIService by name: whether another server (spec.service) serves it. None while the
    APIService watch is not running."""
    _changed_at: float = float("-inf")
    _documents: dict[tuple[str, str, str], Document] = field(default_factory=dict)

    @property
    def fresh(self) -> bool:
        return self.watching.issuperset(API_KINDS) and self.clock() - self._changed_at >= self.settle

    def changed(self) -> None:
        """An API may have been added or removed (or a watch may have missed that): forget all."""
        self.generation += 1
        self._changed_at = self.clock()
        self._documents.clear()

    def watch_started(self, kind: str) -> None:
        self.watching.add(kind)
        self.changed()  # what changed while it was not watching is unknown

    def watch_stopped(self, kind: str) -> None:
        self.watching.discard(kind)
        if kind == API_KINDS[1]:
            self.aggregated = None  # unknown until listed again
        self.changed()

    @property
    def server_validates_fields(self) -> bool:
        """Whether the API server itself validates the fields of every kind it serves, so that
        Helm's client-side OpenAPI check would skip validating any manifest. Helm decides that per
        kind by reading the kind's whole OpenAPI group document (most of its CPU in an install);
        the answer is yes for every built-in and CRD-served API from 1.27 on, and may be no only
        for an API another server serves (an aggregated APIService): with one of those, Helm checks."""
        return (
            self.server_minor is not None
            and self.server_minor >= FIELD_VALIDATION_MINOR
            and self.aggregated is not None
            and not any(self.aggregated.values())
        )

    def apiservices_listed(self, items: list[dict[str, Any]]) -> None:
        self.aggregated = {}
        for item in items:
            self.apiservice_event("ADDED", item)

    def apiservice_event(self, event_type: str, obj: Mapping[str, Any]) -> None:
        if self.aggregated is None:
            return
        name = str((obj.get("metadata") or {}).get("name", ""))
        if event_type == "DELETED":
            self.aggregated.pop(name, None)
        elif event_type in ("ADDED", "MODIFIED"):
            self.aggregated[name] = (obj.get("spec") or {}).get("service") is not None

    def get(self, route: str, path: str, headers: Mapping[str, str]) -> Document | None:
        if not self.fresh:
            return None
        return self._documents.get(document_key(route, path, headers))

    def begin(self) -> int | None:
        """The ticket of a read from the API server starting now: None when what it reads may not be
        kept (not fresh)."""
        return self.generation if self.fresh else None

    def put(
        self, route: str, path: str, headers: Mapping[str, str], ticket: int | None, document: Document
    ) -> bool:
        """Keep a document read (successfully) with `ticket`, unless something changed meanwhile:
        whether it was kept (and may be served to the reads that waited for it)."""
        if ticket is not None and ticket == self.generation and self.fresh:
            self._documents[document_key(route, path, headers)] = document
            return True
        return False


def document_key(route: str, path: str, headers: Mapping[str, str]) -> tuple[str, str, str]:
    """Which document a read asks for: per route (cluster and identity), path and form."""
    # The Accept header selects the document's form (aggregated discovery or the legacy lists).
    accept = next((v for k, v in headers.items() if k.lower() == "accept"), "")
    return route, path, accept
