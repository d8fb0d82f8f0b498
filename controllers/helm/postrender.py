"""Tide's Helm post-renderer: run by Helm as the `tide-postrender` postrenderer/v1 plugin.

Helm pipes the rendered manifests in and reads the post-rendered ones back; the one argument is a
JSON file the engine wrote for this release (post-renderers, commonMetadata, origin). Flux's order:
each `postRenderers[].kustomize` in turn, then commonMetadata labels and annotations, then the
origin labels `helm.toolkit.fluxcd.io/name|namespace` on every object (metadata only). A chart
that renders a Secret named `sh.helm.release.v1.*` is refused: the API proxy treats such names as
Helm's release storage, so a chart could otherwise forge or overwrite release records.

Kustomize post-renderers need the shared kustomize library, which does not exist yet outside the
kustomize controller (which the helm controller must not import): until it moves into shared/,
a HelmRelease with kustomize post-renderers is refused with PostRendererUnavailable before Helm
runs, never half-applied.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

ORIGIN_GROUP = "helm.toolkit.fluxcd.io"


class PostRendererUnavailable(Exception):
    """A post-renderer this build cannot run (kustomize patches and images, for now)."""


class ReleaseStorageImpersonation(ValueError):
    """The chart renders a Secret named as Helm's release storage: it could overwrite release records."""


STORAGE_SECRET_PREFIX = "sh.helm.release.v1."


@dataclass(frozen=True)
class PostRenderSpec:
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    kustomize: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "namespace": self.namespace,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
                "kustomize": self.kustomize,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PostRenderSpec:
        data = json.loads(text)
        return cls(data["name"], data["namespace"], data["labels"], data["annotations"], data["kustomize"])


def check_supported(spec: PostRenderSpec) -> None:
    if any(spec.kustomize):
        # TODO(shared kustomize): run patches and images through the shared kustomize library.
        raise PostRendererUnavailable(
            "kustomize post-renderers are not supported yet by this helm controller; "
            "remove spec.postRenderers or use commonMetadata"
        )


def post_render(manifests: str, spec: PostRenderSpec) -> str:
    check_supported(spec)
    origin = {f"{ORIGIN_GROUP}/name": spec.name, f"{ORIGIN_GROUP}/namespace": spec.namespace}
    out = []
    for doc in yaml.safe_load_all(manifests):
        if not isinstance(doc, dict):
            continue
        meta = doc.setdefault("metadata", {})
        if doc.get("kind") == "Secret" and str(meta.get("name", "")).startswith(STORAGE_SECRET_PREFIX):
            raise ReleaseStorageImpersonation(
                f"the chart renders Secret {meta.get('name')}, a name reserved for Helm's release storage"
            )
        if spec.labels:
            meta["labels"] = {**(meta.get("labels") or {}), **spec.labels}
        if spec.annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **spec.annotations}
        meta["labels"] = {**(meta.get("labels") or {}), **origin}
        out.append(doc)
    text: str = yaml.safe_dump_all(out, sort_keys=False, default_flow_style=False)
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: tide-postrender SPEC.json < manifests", file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as f:
            spec = PostRenderSpec.from_json(f.read())
        sys.stdout.write(post_render(sys.stdin.read(), spec))
    except (OSError, ValueError, KeyError, yaml.YAMLError, PostRendererUnavailable) as err:
        # ReleaseStorageImpersonation is a ValueError: Helm fails the action with this message.
        print(f"tide-postrender: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
