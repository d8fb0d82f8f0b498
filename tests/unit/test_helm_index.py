"""Helm repository indexes: parsing, Helm's version choice, chart URLs, the per-digest cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tide.controllers.source import helm_index
from tide.controllers.source.helm_index import ChartVersion

INDEX = b"""
apiVersion: v1
entries:
  app:
  - name: app
    version: 1.0.0
    digest: aaa
    urls: [app-1.0.0.tgz]
  - name: app
    version: 1.2.0
    urls: [https://cdn.example.com/app-1.2.0.tgz]
  - name: app
    version: 2.0.0-rc.1
    urls: [app-2.0.0-rc.1.tgz]
  - name: app
    version: not-semver
    urls: [x.tgz]
  empty: []
generated: "2024-01-01T00:00:00Z"
"""


def index() -> helm_index.Index:
    return helm_index.parse_index(INDEX)


@pytest.mark.parametrize(
    ("constraint", "want"),
    [
        (None, "1.2.0"),
        ("*", "1.2.0"),
        ("", "1.2.0"),
        ("1.0.0", "1.0.0"),
        ("<1.2.0", "1.0.0"),
        ("~1.0", "1.0.0"),
        (">=2.0.0-0", "2.0.0-rc.1"),
        ("not-semver", "not-semver"),  # an exact string wins, semver or not
    ],
)
def test_version_choice(constraint: str | None, want: str) -> None:
    assert helm_index.resolve(index(), "app", constraint).version == want


def test_missing_chart_and_version() -> None:
    with pytest.raises(helm_index.ChartNotFound, match="'nope'"):
        helm_index.resolve(index(), "nope", "*")
    with pytest.raises(helm_index.NoMatchingVersion, match=r"'app' chart with version matching '>=3\.0\.0'"):
        helm_index.resolve(index(), "app", ">=3.0.0")
    with pytest.raises(helm_index.NoMatchingVersion):
        helm_index.resolve(index(), "empty", "*")
    with pytest.raises(helm_index.InvalidVersionConstraint):
        helm_index.resolve(index(), "app", ">=>1")


@pytest.mark.parametrize(
    "document",
    [
        b"<html>not found</html>",
        b"entries: {}",
        b"apiVersion: v1\nentries: [1, 2]",
        b"apiVersion: v1\n\tbad: [",
    ],
)
def test_not_an_index(document: bytes) -> None:
    with pytest.raises(helm_index.InvalidIndex, match="failed to load Helm repository from index YAML"):
        helm_index.parse_index(document)


def test_chart_urls_resolve_against_the_repository() -> None:
    versions = index()["app"]
    assert helm_index.chart_url("https://charts.example.com/sub", versions[0]) == (
        "https://charts.example.com/sub/app-1.0.0.tgz"
    )
    assert helm_index.chart_url("https://charts.example.com/", versions[1]) == (
        "https://cdn.example.com/app-1.2.0.tgz"
    )
    with pytest.raises(helm_index.NoMatchingVersion):
        helm_index.chart_url("https://x", ChartVersion("a", "1.0.0", (), None))


def test_parsed_once_per_digest(tmp_path: Path) -> None:
    path = tmp_path / "index.yaml"
    path.write_bytes(INDEX)
    first = helm_index.cached_index(path, "sha256:one")
    path.write_bytes(b"apiVersion: v1\nentries: {}\n")
    assert helm_index.cached_index(path, "sha256:one") is first  # same digest: no parse
    assert helm_index.cached_index(path, "sha256:two") == {}
    assert helm_index.resolve_stored(path, "sha256:one", "app", "1.0.0").digest == "aaa"


RICH = b"""
apiVersion: v1
generated: 2024-01-01T00:00:00Z
serverInfo: {contextPath: /charts}
entries:
  web:
  - apiVersion: v2
    name: web
    version: "1.0"
    appVersion: 1.0
    description: "a: b"
    keywords: [x, y]
    maintainers: [{name: me, email: me@example.com}]
    dependencies:
    - {name: db, version: ~1, repository: "https://x"}
    annotations: {artifacthub.io/links: "- name: x\\n  url: y"}
    urls: [web-1.0.tgz, "https://mirror/web-1.0.tgz"]
    digest: abc
    created: 2024-01-01T00:00:00Z
  - not a chart version
  - {name: web, urls: [x.tgz]}
  nulls: ~
  quoted:
  - {name: quoted, version: "null", urls: []}
"""


def test_event_walk_reads_as_the_full_document() -> None:
    import yaml

    walked = helm_index.parse_index(RICH)
    assert walked == helm_index._from_document(yaml.safe_load(RICH))
    assert walked["web"] == [ChartVersion("web", "1.0", ("web-1.0.tgz", "https://mirror/web-1.0.tgz"), "abc")]
    assert walked["nulls"] == [] and walked["quoted"][0].version == "null"


def test_aliases_fall_back_to_the_full_load() -> None:
    doc = b"apiVersion: v1\nentries:\n  a:\n  - &v {name: a, version: 1.0.0, urls: [a.tgz]}\n  b:\n  - *v\n"
    index = helm_index.parse_index(doc)
    assert index["b"][0].version == "1.0.0" and index["b"][0].name == "b"


def test_cache_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "index.yaml"
    path.write_bytes(INDEX)
    off = helm_index.CacheSettings(max_size=0)
    assert helm_index.cached_index(path, "sha256:off", off) is not helm_index.cached_index(
        path, "sha256:off", off
    )

    clock = [1000.0]
    monkeypatch.setattr(helm_index.time, "monotonic", lambda: clock[0])
    short = helm_index.CacheSettings(max_size=2, ttl=60, purge_interval=10)
    first = helm_index.cached_index(path, "sha256:a", short)
    clock[0] += 50
    assert helm_index.cached_index(path, "sha256:a", short) is first  # used: 60s more
    clock[0] += 100
    assert helm_index.cached_index(path, "sha256:a", short) is not first  # expired
    helm_index.cached_index(path, "sha256:b", short)
    helm_index.cached_index(path, "sha256:c", short)
    assert len(helm_index._cache) <= 2
