"""OCIRepository references, revisions and layers: Flux's rules as pure functions.

Precedence digest > semver > tag, default tag `latest`; revisions `<tag>@sha256:<hex>` (or
`sha256:<hex>` for a digest reference); the first layer of the manifest unless
`layerSelector.mediaType` picks another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tide.controllers.source.refs import InvalidSemver, highest_version, parse_constraint
from tide.shared.api.source import OCILayerSelector, OCIRepositoryRef

DEFAULT_TAG = "latest"
EXTRACT = "extract"
COPY = "copy"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class InvalidReference(Exception):
    """The spec's reference cannot be resolved (no matching tag, bad digest, bad range)."""


class LayerError(Exception):
    """The manifest has no layer the selector accepts."""


@dataclass(frozen=True)
class Wanted:
    """What spec.ref asks for: a tag to look up, a semver range over the tags, or a digest."""

    kind: str  # tag | semver | digest
    value: str
    semver_filter: str | None = None


def wanted(ref: OCIRepositoryRef | None) -> Wanted:
    ref = ref or OCIRepositoryRef()
    if ref.digest:
        return Wanted("digest", ref.digest)
    if ref.semver:
        return Wanted("semver", ref.semver, ref.semver_filter)
    return Wanted("tag", ref.tag or DEFAULT_TAG)


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise InvalidReference(f"invalid digest '{digest}': expected sha256:<64 hex characters>")
    return digest


def highest_tag(tags: Iterable[str], constraint: str, tag_filter: str | None = None) -> str:
    """The tag with the highest version in the range (Masterminds rules, lenient versions);
    with a filter, only the tags the regular expression matches anywhere count."""
    pattern: re.Pattern[str] | None = None
    if tag_filter:
        try:
            pattern = re.compile(tag_filter)
        except re.error as exc:
            raise InvalidReference(f"failed to compile regex {tag_filter}: {exc}") from exc
    try:
        check = parse_constraint(constraint)
    except InvalidSemver as exc:
        raise InvalidReference(f"semver '{constraint}' parse error: {exc}") from exc
    found = highest_version((t for t in tags if pattern is None or pattern.search(t)), check)
    if found is None:
        raise InvalidReference(f"no match found for semver: {constraint}")
    return found


def revision(tag: str | None, digest: str) -> str:
    return f"{tag}@{digest}" if tag else digest


def digest_of_revision(rev: str) -> str:
    return rev.rsplit("@", 1)[-1]


def layer_operation(selector: OCILayerSelector | None) -> str:
    return (selector.operation if selector and selector.operation else None) or EXTRACT


def select_layer(manifest: dict[str, Any], selector: OCILayerSelector | None) -> dict[str, Any]:
    """The layer descriptor to pull: the first with the selector's media type, else the first."""
    layers = manifest.get("layers") or []
    if not layers:
        raise LayerError("no layers found in artifact")
    media_type = selector.media_type if selector else None
    if not media_type:
        return dict(layers[0])
    for layer in layers:
        if layer.get("mediaType") == media_type:
            return dict(layer)
    raise LayerError(f"failed to find layer with media type '{media_type}' in artifact")


def same_layer_selector(a: OCILayerSelector | None, b: OCILayerSelector | None) -> bool:
    def key(s: OCILayerSelector | None) -> tuple[str | None, str | None] | None:
        return None if s is None else (s.media_type, s.operation)

    return key(a) == key(b)
