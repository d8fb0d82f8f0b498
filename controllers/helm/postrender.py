"""Tide's Helm post-renderer: what Helm's `tide-postrender` postrenderer/v1 plugin does, as the
engine sees it (the plugin process itself is postrender_plugin.py, kept to json and PyYAML).

Helm pipes the rendered manifests in and reads the post-rendered ones back; the plugin's argument
is a JSON file the engine wrote for this release (PostRenderSpec: post-renderers, commonMetadata,
origin). Flux's order:
each `postRenderers[].kustomize` in turn, then commonMetadata labels and annotations, then the
origin labels `helm.toolkit.fluxcd.io/name|namespace` on every object (metadata only). A chart
that renders a Secret named `sh.helm.release.v1.*` is refused: the API proxy treats such names as
Helm's release storage, so a chart could otherwise forge or overwrite release records (checked
last, so a patch cannot rename a Secret into storage either).

A kustomize post-renderer is a `kustomize build` of a directory holding only the rendered
manifests and a generated kustomization.yaml, run through the shared kustomize library with the
kustomize controller's limits: root-only file loading, no remote bases (no git, HTTP to nowhere),
no plugins, a timeout and a memory ceiling. Patches and images are tenant-written, the manifests
chart-written: neither may read a file, fetch anything or take the controller's memory.

The digests Flux records in status (observedPostRenderersDigest, observedCommonMetadataDigest) are
sha256 of `encoding/json` output of Flux's Go types, so a release Flux managed is taken over
without an upgrade for nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tide.controllers.helm import postrender_plugin
from tide.controllers.helm.go_encoding import GoStruct, go_json
from tide.controllers.helm.postrender_plugin import (
    HELM_OUTPUT,
    ORIGIN_GROUP,
    STORAGE_SECRET_PREFIX,
    PostRenderFailed,
    ReleaseStorageImpersonation,
)

if TYPE_CHECKING:
    from tide.shared.api.helm import KustomizePostRenderer, PostRenderer
    from tide.shared.api.meta import CommonMetadata, Image, Patch, Selector

KUSTOMIZE_TIMEOUT = 120.0
"""Seconds one kustomize post-renderer may run (Helm's own timeout covers the whole action)."""
__all__ = [
    "HELM_OUTPUT",
    "ORIGIN_GROUP",
    "STORAGE_SECRET_PREFIX",
    "PostRenderFailed",
    "PostRenderSpec",
    "ReleaseStorageImpersonation",
]


@dataclass(frozen=True)
class PostRenderSpec:
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    kustomize: list[dict[str, Any]] = field(default_factory=list)
    """One kustomization (patches, images) per kustomize post-renderer, in order."""
    kustomize_binary: str = ""
    timeout: float = KUSTOMIZE_TIMEOUT
    memory_limit: int | None = None
    """kustomize's memory ceiling in bytes; None: the shared library's default."""

    def to_json(self) -> str:
        return json.dumps({k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> PostRenderSpec:
        return cls(**json.loads(text))


# --- the spec as Flux reads it (pure) ----------------------------------------------------------------


def _selector(target: Selector) -> dict[str, str]:
    return target.model_dump(mode="json", by_alias=True, exclude_none=True)


def kustomization(renderer: KustomizePostRenderer) -> dict[str, Any]:
    """The kustomization.yaml of one post-renderer: the rendered manifests patched, images set."""
    from tide.shared.kustomize.build import KUSTOMIZE_API_VERSION

    patches = []
    for patch in renderer.all_patches():
        item: dict[str, Any] = {"patch": patch.patch}
        if patch.target is not None:
            item["target"] = _selector(patch.target)
        patches.append(item)
    images = [i.model_dump(mode="json", by_alias=True, exclude_none=True) for i in renderer.images or []]
    out: dict[str, Any] = {
        "apiVersion": KUSTOMIZE_API_VERSION,
        "kind": "Kustomization",
        "resources": [HELM_OUTPUT],
    }
    if patches:
        out["patches"] = patches
    if images:
        out["images"] = images
    return out


def kustomizations(renderers: Sequence[PostRenderer] | None) -> list[dict[str, Any]]:
    return [kustomization(r.kustomize) for r in renderers or [] if r.kustomize is not None]


def _go_selector(s: Selector) -> GoStruct:
    fields = (
        ("group", s.group),
        ("version", s.version),
        ("kind", s.kind),
        ("namespace", s.namespace),
        ("name", s.name),
        ("annotationSelector", s.annotation_selector),
        ("labelSelector", s.label_selector),
    )
    return GoStruct((k, v) for k, v in fields if v)


def _go_patch(p: Patch) -> GoStruct:
    out = GoStruct()
    if p.patch:
        out["patch"] = p.patch
    if p.target is not None:
        out["target"] = _go_selector(p.target)
    return out


def _go_image(i: Image) -> GoStruct:
    out = GoStruct(name=i.name)
    for key, value in (("newName", i.new_name), ("newTag", i.new_tag), ("digest", i.digest)):
        if value:
            out[key] = value
    return out


def _go_renderer(r: PostRenderer) -> GoStruct:
    if r.kustomize is None:
        return GoStruct()
    k = GoStruct()
    patches = r.kustomize.all_patches()
    if patches:
        k["patches"] = [_go_patch(p) for p in patches]
    if r.kustomize.images:
        k["images"] = [_go_image(i) for i in r.kustomize.images]
    return GoStruct(kustomize=k)


def _encoder_digest(value: Any) -> str:
    """sha256 of what Go's json.Encoder writes (Marshal plus a newline), as a digest string."""
    return "sha256:" + hashlib.sha256((go_json(value) + "\n").encode()).hexdigest()


def post_renderers_digest(renderers: Sequence[PostRenderer] | None) -> str:
    """Flux's observedPostRenderersDigest of spec.postRenderers; empty when the field is unset."""
    if renderers is None:
        return ""
    return _encoder_digest([_go_renderer(r) for r in renderers])


def common_metadata_digest(common: CommonMetadata | None) -> str:
    """Flux's observedCommonMetadataDigest of spec.commonMetadata; empty when the field is unset."""
    if common is None:
        return ""
    out = GoStruct()
    if common.annotations:
        out["annotations"] = dict(common.annotations)
    if common.labels:
        out["labels"] = dict(common.labels)
    return _encoder_digest(out)


# --- the plugin (postrender_plugin.py, a process per install or upgrade) ------------------------


def post_render(manifests: str, spec: PostRenderSpec) -> str:
    """What the plugin process makes of these manifests for this spec."""
    return postrender_plugin.post_render(manifests, json.loads(spec.to_json()))


def error_file(spec_path: str) -> Path:
    """Where the plugin leaves why it failed, next to its spec: Helm drops a plugin's stderr."""
    return Path(postrender_plugin.error_path(spec_path))
