"""A Helm repository index: parsed into the little a chart lookup needs, and the version a
HelmChart asks for chosen from it (Helm's rules: an exact match wins, else the highest in
the semver range).

Parsing happens in build workers (the event loop never holds a 40 MiB YAML document) and
the parsed index is kept per worker for the repository artifact it came from, so the
HelmCharts of one repository revision share one parse.
"""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import yaml

from tide.controllers.source.refs import InvalidSemver, parse_constraint, parse_version

try:  # libyaml when present: an order of magnitude faster on large indexes
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment,unused-ignore]
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


class IndexError_(Exception):
    """Base of the index errors (name clash with the builtin avoided)."""


class InvalidIndex(IndexError_):
    """The document is no Helm repository index."""


class ChartNotFound(IndexError_):
    pass


class NoMatchingVersion(IndexError_):
    pass


class InvalidVersionConstraint(IndexError_):
    pass


@dataclass(frozen=True, slots=True)
class ChartVersion:
    name: str
    version: str
    urls: tuple[str, ...]
    digest: str | None  # hex sha256 of the .tgz as the index states it


# name -> versions as listed; only what a lookup needs, so a parsed index is a fraction of the YAML
Index = dict[str, list[ChartVersion]]


class _NeedsFullLoad(Exception):
    """An alias or tag where a field is read: the event walk leaves the document to PyYAML."""


def parse_index(data: bytes) -> Index:
    return parse_index_stream(io.BytesIO(data))


def parse_index_stream(stream: BinaryIO) -> Index:
    """Walk the YAML events, keeping only name, version, urls and digest of each entry: the
    document is never built as Python objects, so a 40 MiB index costs a fraction of that."""
    try:
        try:
            return _walk(yaml.parse(stream, Loader=_Loader))
        except _NeedsFullLoad:
            stream.seek(0)
            return _from_document(yaml.load(stream, Loader=_Loader))  # a safe loader
    except yaml.YAMLError as exc:
        raise InvalidIndex(f"failed to load Helm repository from index YAML: {exc}") from exc


def _invalid(why: str) -> InvalidIndex:
    return InvalidIndex(f"failed to load Helm repository from index YAML: {why}")


def _scalar(events: Iterator[yaml.Event], event: yaml.Event | None = None) -> str | None:
    """The next value as a string; None for a null or for a collection (skipped)."""
    event = event or next(events)
    if isinstance(event, yaml.AliasEvent):
        raise _NeedsFullLoad()
    if isinstance(event, yaml.ScalarEvent):
        if event.implicit[0] and event.value in ("", "~", "null", "Null", "NULL"):
            return None
        return str(event.value)
    _skip(events, event)
    return None


def _skip(events: Iterator[yaml.Event], event: yaml.Event) -> None:
    depth = 1 if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)) else 0
    while depth:
        event = next(events)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _walk(parsed: Iterable[yaml.Event]) -> Index:
    events = iter(parsed)
    for expected in (yaml.StreamStartEvent, yaml.DocumentStartEvent):
        if not isinstance(next(events, None), expected):
            raise _invalid("no YAML document")
    if not isinstance(next(events), yaml.MappingStartEvent):
        raise _invalid("no API version")
    api_version = None
    index: Index = {}
    while not isinstance(event := next(events), yaml.MappingEndEvent):
        key = _scalar(events, event)
        if key == "apiVersion":
            api_version = _scalar(events)
        elif key == "entries":
            index = _entries(events)
        else:
            _skip(events, next(events))
    if not api_version:
        raise _invalid("no API version")
    return index


def _entries(events: Iterator[yaml.Event]) -> Index:
    event = next(events)
    if isinstance(event, yaml.ScalarEvent) and _scalar(events, event) is None:
        return {}
    if not isinstance(event, yaml.MappingStartEvent):
        raise _NeedsFullLoad()  # an alias, or no map: the full load decides
    index: Index = {}
    while not isinstance(event := next(events), yaml.MappingEndEvent):
        name = _scalar(events, event) or ""
        versions: list[ChartVersion] = []
        event = next(events)
        if isinstance(event, yaml.SequenceStartEvent):
            while not isinstance(event := next(events), yaml.SequenceEndEvent):
                if isinstance(event, yaml.MappingStartEvent):
                    version = _entry(events, name)
                    if version is not None:
                        versions.append(version)
                else:
                    _scalar(events, event)  # Helm skips what is no chart version
        else:
            _scalar(events, event)
        index[name] = versions
    return index


def _entry(events: Iterator[yaml.Event], name: str) -> ChartVersion | None:
    version = digest = None
    urls: list[str] = []
    while not isinstance(event := next(events), yaml.MappingEndEvent):
        key = _scalar(events, event)
        if key == "version":
            version = _scalar(events)
        elif key == "digest":
            digest = _scalar(events)
        elif key == "urls":
            event = next(events)
            if isinstance(event, yaml.SequenceStartEvent):
                while not isinstance(event := next(events), yaml.SequenceEndEvent):
                    url = _scalar(events, event)
                    if url is not None:
                        urls.append(url)
            else:
                _scalar(events, event)
        else:
            _skip(events, next(events))
    if not version:
        return None
    return ChartVersion(name, version, tuple(urls), digest)


def _from_document(doc: object) -> Index:
    if not isinstance(doc, dict) or not doc.get("apiVersion"):
        raise _invalid("no API version")
    entries = doc.get("entries") or {}
    if not isinstance(entries, dict):
        raise _invalid("'entries' is no map")
    index: Index = {}
    for name, versions in entries.items():
        out: list[ChartVersion] = []
        for item in versions if isinstance(versions, list) else []:
            if not isinstance(item, dict) or not item.get("version"):
                continue  # Helm skips invalid entries too
            urls = item.get("urls") or []
            digest = item.get("digest")
            out.append(
                ChartVersion(
                    str(name),
                    str(item["version"]),
                    tuple(str(u) for u in urls if isinstance(u, str)),
                    str(digest) if digest else None,
                )
            )
        index[str(name)] = out
    return index


def resolve(index: Index, name: str, constraint: str | None) -> ChartVersion:
    """Helm's ChartVersions.Get: an exact version string wins, otherwise the highest in range."""
    versions = index.get(name)
    if versions is None:
        raise ChartNotFound(f"no chart name found: chart '{name}' is not in the repository index")
    if not versions:
        raise NoMatchingVersion(f"no chart version found for {name}")
    wanted = (constraint or "").strip()
    if wanted:
        for cv in versions:
            if cv.version == wanted:
                return cv
    try:
        check = parse_constraint(wanted if wanted and wanted != "*" else "*")
    except InvalidSemver as exc:
        raise InvalidVersionConstraint(f"invalid chart version constraint '{wanted}': {exc}") from exc
    best: tuple[object, ChartVersion] | None = None
    for cv in versions:
        parsed = parse_version(cv.version)
        if parsed is None or not check(parsed):
            continue
        if best is None or parsed > best[0]:  # type: ignore[operator]
            best = (parsed, cv)
    if best is None:
        raise NoMatchingVersion(f"no '{name}' chart with version matching '{wanted or '*'}' found")
    return best[1]


def chart_url(repository_url: str, version: ChartVersion) -> str:
    """The first URL of the version, relative ones resolved against the repository URL."""
    if not version.urls:
        raise NoMatchingVersion(
            f"chart '{version.name}' version '{version.version}' has no downloadable URLs"
        )
    url = version.urls[0]
    if urlsplit(url).scheme:
        return url
    return urljoin(repository_url.rstrip("/") + "/", url)


# -- the per-worker cache ------------------------------------------------------------------


@dataclass(frozen=True)
class CacheSettings:
    """--helm-cache-max-size / -ttl / -purge-interval, applied in each build worker."""

    max_size: int = 4  # parsed indexes kept per worker; 0 turns the cache off
    ttl: float = 15 * 60.0  # an index unused this long is dropped
    purge_interval: float = 60.0  # how often the expired ones are swept


@dataclass
class _Cached:
    index: Index
    used: float


_cache: OrderedDict[str, _Cached] = OrderedDict()
_cache_lock = threading.Lock()
_last_purge = 0.0


def _purge(now: float, settings: CacheSettings) -> None:
    global _last_purge
    if now - _last_purge < settings.purge_interval:
        return
    _last_purge = now
    for key in [k for k, v in _cache.items() if now - v.used > settings.ttl]:
        del _cache[key]


def cached_index(path: Path, digest: str, settings: CacheSettings = CacheSettings()) -> Index:
    """The parsed index of a repository artifact, parsed once per content digest (the same
    bytes parse the same, whichever object or path they came from)."""
    now = time.monotonic()
    with _cache_lock:
        _purge(now, settings)
        found = _cache.get(digest)
        if found is not None and now - found.used <= settings.ttl:
            found.used = now
            _cache.move_to_end(digest)
            return found.index
    with path.open("rb") as stream:
        index = parse_index_stream(stream)
    with _cache_lock:
        if settings.max_size > 0:
            _cache[digest] = _Cached(index, now)
            _cache.move_to_end(digest)
        while len(_cache) > settings.max_size:
            _cache.popitem(last=False)
    return index


def resolve_stored(
    path: Path, digest: str, name: str, constraint: str | None, settings: CacheSettings = CacheSettings()
) -> ChartVersion:
    """Worker entry point: the chart version from a stored index artifact."""
    return resolve(cached_index(path, digest, settings), name, constraint)


def check_index(path: Path, digest: str, settings: CacheSettings = CacheSettings()) -> int:
    """Worker entry point: the document parses as an index (kept for the HelmCharts that
    follow); returns its chart count."""
    return len(cached_index(path, digest, settings))
