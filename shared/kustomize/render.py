"""A Kustomization's objects from a tree, as Flux renders them: build, decrypt, substitute, then the
metadata Flux adds (spec.commonMetadata and the owner labels). The kustomize controller, `tide build`
and `tide diff` render through here, so a local build is the controller's build."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from tide.shared.api.kustomize import PostBuild
from tide.shared.kustomize.build import DEFAULT_MEMORY_LIMIT, BuildError, apply_common_metadata, build
from tide.shared.kustomize.owner import set_owner_labels
from tide.shared.kustomize.substitute import substitute_objects

Obj = dict[str, Any]
Decrypt = Callable[[list[Obj]], list[Obj]]
"""Decrypts the built objects (in a thread); an object it leaves alone is returned as is."""
GetData = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
"""(kind, name) -> the ConfigMap or Secret, None when it does not exist."""


class VariablesSourceNotFound(LookupError):
    """A postBuild.substituteFrom object that is not optional does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} '{name}' not found")
        self.kind = kind
        self.name = name


def object_data(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """A ConfigMap's data, or a Secret's data decoded, as variables."""
    data = obj.get("data") or {}
    if kind == "Secret":
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
    return {k: str(v) for k, v in data.items()}


async def substitution_variables(post: PostBuild | None, get: GetData) -> dict[str, str] | None:
    """postBuild's variables: substituteFrom in order (later wins; missing optional ones skipped),
    then inline substitute (wins). None when nothing is to be substituted."""
    if post is None:
        return None
    variables: dict[str, str] = {}
    for ref in post.substitute_from or []:
        found = await get(ref.kind, ref.name)
        if found is None:
            if ref.optional:
                continue
            raise VariablesSourceNotFound(ref.kind, ref.name)
        variables.update(object_data(ref.kind, found))
    variables.update(post.substitute or {})
    if not variables and (post.substitute_strategy or "WithVariables") != "Always":
        return None
    return variables


async def render(
    root: Path,
    spec: Mapping[str, Any],
    *,
    variables: Mapping[str, str] | None,
    strict: bool = True,
    limit: float = 300.0,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    no_remote_bases: bool = False,
    binary: str | None = None,
    before_build: Callable[[Path, Path], None] | None = None,
    decrypt: Decrypt | None = None,
) -> list[Obj]:
    """Build spec.path of root (modified in place: it is the caller's copy), decrypt, substitute."""
    docs = await build(
        root,
        spec,
        no_remote_bases=no_remote_bases,
        limit=limit,
        memory_limit=memory_limit,
        binary=binary,
        before_build=before_build,
    )
    objects = [d.obj for d in docs]
    texts: list[str | None] = [d.text for d in docs]
    for o in objects:
        if not o.get("apiVersion") or not o.get("kind") or not (o.get("metadata") or {}).get("name"):
            raise BuildError(f"object without apiVersion, kind or metadata.name in the build output: {o}")
    if decrypt is not None:
        decrypted = await asyncio.to_thread(decrypt, objects)
        # kustomize's text of an object stays usable for substitution only while it is unchanged.
        texts = [t if d is o else None for d, o, t in zip(decrypted, objects, texts, strict=True)]
        objects = decrypted
    if variables is not None:
        # YAML dump, substitution and reload: CPU work, off the event loop.
        objects = await asyncio.to_thread(substitute_objects, objects, variables, strict, texts)
    return objects


def add_flux_metadata(
    objects: list[Obj], common: Mapping[str, Any] | None, name: str, namespace: str
) -> None:
    """spec.commonMetadata, then the labels naming the Kustomization that owns the objects."""
    apply_common_metadata(objects, common)
    for o in objects:
        set_owner_labels(o, name, namespace)
