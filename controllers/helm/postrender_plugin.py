"""The `tide-postrender` plugin's work: what Helm's post-render does for every install and upgrade.

Helm starts the relay (postrender_relay.py, sdk.plugin_manifest) and pipes the rendered manifests
through it; `main` here runs in a child the post-render server forks for that one post-render
(postrender_server.py), or in the relay itself when the server is gone. A process per post-render
keeps a hostile chart's YAML in an address space of its own; this module keeps that cheap: run
without `site`, nothing imported beyond json and PyYAML until a kustomize post-renderer needs
Tide's kustomize runner. Flux's order: each kustomize
post-renderer in turn, then commonMetadata, then the origin labels; a Secret named as Helm's
release storage is refused (see apiproxy), checked last so a patch cannot rename one into storage.

The spec is postrender.PostRenderSpec as JSON (written by the engine), read here as a plain dict.
"""

from __future__ import annotations

import json
import os
import sys

if __name__ == "__main__" and len(sys.argv) > 1:  # without `site`: the engine's site directories,
    sys.path.extend(d for d in sys.argv[1].split(os.pathsep) if d)  # their .pth files unread

import yaml

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing's import is a tenth of this process's start-up
    from collections.abc import Mapping
    from typing import Any

ORIGIN_GROUP = "helm.toolkit.fluxcd.io"
STORAGE_SECRET_PREFIX = "sh.helm.release.v1."
HELM_OUTPUT = "helm-output.yaml"
# libyaml's parser and emitter when PyYAML has them (the constructors and representers are the same).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class PostRenderFailed(ValueError):
    """A kustomize post-renderer failed (a patch that does not apply, a limit reached)."""


class ReleaseStorageImpersonation(ValueError):
    """The chart renders a Secret named as Helm's release storage: it could overwrite release records."""


def kustomize_manifests(manifests: str, config: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    """One kustomize post-renderer, by the real kustomize, in a directory holding nothing else, with
    the kustomize controller's limits (root-only loading, no remote bases, a timeout, a memory
    ceiling)."""
    # Imported here: most releases have no kustomize post-renderer, and these are most of the cost.
    import asyncio
    import shutil
    import tempfile
    from pathlib import Path

    from tide.shared.kustomize.build import BuildError, run_kustomize

    if not manifests.strip():
        return manifests
    root = Path(tempfile.mkdtemp(prefix="tide-postrender-"))
    memory_limit = spec.get("memory_limit")
    limits = {} if memory_limit is None else {"memory_limit": memory_limit}
    try:
        (root / HELM_OUTPUT).write_text(manifests)
        (root / "kustomization.yaml").write_text(json.dumps(dict(config)))
        run = run_kustomize(
            root, root, spec["kustomize_binary"], spec["timeout"], remote_bases=False, **limits
        )
        return asyncio.run(run)
    except BuildError as err:
        raise PostRenderFailed(f"kustomize post-renderer: {err}") from err
    finally:
        shutil.rmtree(root, ignore_errors=True)


def add_release_metadata(manifests: str, spec: Mapping[str, Any]) -> str:
    """commonMetadata, then the origin labels; a forged release-storage Secret is refused."""
    origin = {f"{ORIGIN_GROUP}/name": spec["name"], f"{ORIGIN_GROUP}/namespace": spec["namespace"]}
    labels, annotations = spec.get("labels") or {}, spec.get("annotations") or {}
    out = []
    for doc in yaml.load_all(manifests, Loader=_LOADER):
        if not isinstance(doc, dict):
            continue
        meta = doc.setdefault("metadata", {})
        if doc.get("kind") == "Secret" and str(meta.get("name", "")).startswith(STORAGE_SECRET_PREFIX):
            raise ReleaseStorageImpersonation(
                f"the chart renders Secret {meta.get('name')}, a name reserved for Helm's release storage"
            )
        if labels:
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
        if annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        meta["labels"] = {**(meta.get("labels") or {}), **origin}
        out.append(doc)
    text: str = yaml.dump_all(out, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
    return text


def post_render(manifests: str, spec: Mapping[str, Any]) -> str:
    for config in spec.get("kustomize") or []:
        manifests = kustomize_manifests(manifests, config, spec)
    return add_release_metadata(manifests, spec)


def error_path(spec_path: str) -> str:
    """Where the plugin leaves why it failed, next to its spec: Helm drops a plugin's stderr."""
    return spec_path + ".error"


def _import_tide(site_dirs: str) -> None:
    """Make Tide importable the way the controller's interpreter does (.pth files, editable installs
    included): only a kustomize post-renderer needs it."""
    import site

    for directory in site_dirs.split(os.pathsep):
        if directory:
            site.addsitedir(directory)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: tide-postrender SITE_DIRS SPEC.json < manifests", file=sys.stderr)
        return 2
    site_dirs, spec_path = argv
    try:
        with open(spec_path, encoding="utf-8") as f:
            spec = json.load(f)
        if spec.get("kustomize"):
            _import_tide(site_dirs)
        sys.stdout.write(post_render(sys.stdin.read(), spec))
    except (OSError, ValueError, KeyError, TypeError, ImportError, yaml.YAMLError) as err:
        # Helm fails the action with this message (PostRenderFailed and ReleaseStorageImpersonation
        # are ValueErrors).
        print(f"tide-postrender: {err}", file=sys.stderr)
        try:
            with open(error_path(spec_path), "w", encoding="utf-8") as f:
                f.write(str(err))
        except OSError:
            pass  # stderr has it
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
