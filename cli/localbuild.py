"""Build a Kustomization from a local directory exactly as the kustomize controller builds its artifact.

The render is the controller's own (tide.shared.kustomize.render); this module only supplies the
local tree and the variables from the cluster.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tide.cli.errors import EXIT_USAGE, CliError
from tide.cli.kube import ClusterClient

Obj = dict[str, Any]


def source_root(path: Path) -> Path:
    """The tree the path lives in (the Git work tree when there is one), so `../base` references resolve."""
    path = path.resolve()
    for parent in (path, *path.parents):
        if (parent / ".git").exists():
            return parent
    return path


def kustomize_binary() -> str | None:
    """The controller's lookup (TIDE_KUSTOMIZE, PATH), then the pinned build in the repository's .tide/bin."""
    import os

    if os.environ.get("TIDE_KUSTOMIZE") or shutil.which("kustomize"):
        return None
    pinned = Path(__file__).resolve().parent.parent / ".tide" / "bin" / "kustomize"
    return str(pinned) if pinned.exists() else None


async def postbuild_variables(kube: ClusterClient | None, ks: Obj) -> dict[str, str] | None:
    """The controller's variables; substituteFrom is read from the cluster (skipped without one)."""
    from pydantic import ValidationError

    from tide.shared.api.kustomize import PostBuild
    from tide.shared.kustomize.render import VariablesSourceNotFound, substitution_variables

    spec = ks.get("spec") or {}
    raw_post = dict(spec.get("postBuild") or {})
    if not raw_post:
        return None
    if kube is None:
        raw_post.pop("substituteFrom", None)
    namespace = (ks.get("metadata") or {}).get("namespace", "default")
    try:
        post = PostBuild.model_validate(raw_post)
    except ValidationError as exc:
        raise CliError(
            f"invalid spec.postBuild: {exc}", "fix the Kustomization's postBuild", EXIT_USAGE
        ) from None

    async def get(kind: str, name: str) -> Obj | None:
        if kube is None:
            return None
        return await kube.get("v1", kind, name, namespace)

    try:
        return await substitution_variables(post, get)
    except VariablesSourceNotFound as exc:
        raise CliError(
            f"substituteFrom {exc.kind}/{namespace}/{exc.name} not found",
            "create it, mark it optional, or build with --dry-run",
            EXIT_USAGE,
        ) from None


async def build_local(
    kube: ClusterClient | None, ks: Obj, path: str, strict: bool = False, build_seconds: float = 120
) -> list[Obj]:
    from tide.shared.kustomize.build import BuildError
    from tide.shared.kustomize.render import add_flux_metadata, render
    from tide.shared.kustomize.substitute import SubstitutionError

    local = Path(path)
    if not await asyncio.to_thread(local.is_dir):
        raise CliError(
            f"{path} is not a directory",
            "pass --path <dir> with the manifests of this Kustomization",
            EXIT_USAGE,
        )
    root = await asyncio.to_thread(source_root, local)
    spec = dict(ks.get("spec") or {})
    spec["path"] = str((await asyncio.to_thread(local.resolve)).relative_to(root)) or "./"
    meta = ks.get("metadata") or {}
    variables = await postbuild_variables(kube, ks)
    with tempfile.TemporaryDirectory(prefix="tide-build-") as tmp:
        copy = Path(tmp) / "src"
        # The build rewrites kustomization.yaml in place: never touch the user's tree.
        await asyncio.to_thread(
            shutil.copytree, root, copy, symlinks=True, ignore=shutil.ignore_patterns(".git")
        )
        try:
            objects = await render(
                copy, spec, variables=variables, strict=strict, limit=build_seconds, binary=kustomize_binary()
            )
        except BuildError as exc:
            raise CliError(
                f"build failed: {exc}", "fix the manifests under --path, then retry", EXIT_USAGE
            ) from None
        except SubstitutionError as exc:
            raise CliError(
                f"substitution failed: {exc}",
                "define the variable in postBuild or give it a default",
                EXIT_USAGE,
            ) from None
    add_flux_metadata(objects, spec.get("commonMetadata"), meta.get("name", ""), meta.get("namespace", ""))
    return objects


async def load_kustomization(kube: ClusterClient | None, name: str, namespace: str, file: str | None) -> Obj:
    """The Kustomization from --kustomization-file, else from the cluster."""
    import yaml

    if file:
        try:
            text = await asyncio.to_thread(Path(file).read_text)
            for doc in yaml.safe_load_all(text):
                if doc and doc.get("kind") == "Kustomization" and doc.get("metadata", {}).get("name") == name:
                    doc.setdefault("metadata", {}).setdefault("namespace", namespace)
                    return dict(doc)
        except (OSError, yaml.YAMLError) as exc:
            raise CliError(
                f"cannot read {file}: {exc}", "pass a YAML file with the Kustomization", EXIT_USAGE
            ) from None
        raise CliError(f"no Kustomization {name} in {file}", "check the name and the file", EXIT_USAGE)
    if kube is None:
        raise CliError(
            "--dry-run needs --kustomization-file", "pass the Kustomization's YAML file", EXIT_USAGE
        )
    from tide.cli.kinds import KUSTOMIZATION

    ks = await kube.get(KUSTOMIZATION.api_version, KUSTOMIZATION.kind, name, namespace)
    if ks is None:
        raise CliError(
            f"Kustomization {name} not found in {namespace} namespace",
            "check the name and -n, or pass --kustomization-file",
            EXIT_USAGE,
        )
    return ks
