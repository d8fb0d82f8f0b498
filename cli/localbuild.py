"""Build a Kustomization from a local directory exactly as the kustomize controller builds its artifact.

The build and substitution are the controller's own functions (tide.shared.kustomize.build and
.substitute); this module only supplies the local tree and the variables from the cluster.
"""

from __future__ import annotations

import asyncio
import base64
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


async def postbuild_variables(kube: ClusterClient | None, ks: Obj) -> dict[str, str]:
    """substituteFrom in order (later wins; missing optional ones skipped), then inline substitute (wins)."""
    spec = ks.get("spec") or {}
    post = spec.get("postBuild") or {}
    variables: dict[str, str] = {}
    namespace = (ks.get("metadata") or {}).get("namespace", "default")
    for ref in post.get("substituteFrom") or []:
        if kube is None:
            continue
        kind = ref.get("kind", "ConfigMap")
        obj = await kube.get("v1", kind, ref["name"], namespace)
        if obj is None:
            if ref.get("optional"):
                continue
            raise CliError(
                f"substituteFrom {kind}/{namespace}/{ref['name']} not found",
                "create it, mark it optional, or build with --dry-run",
                EXIT_USAGE,
            )
        data = obj.get("data") or {}
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        variables.update({k: str(v) for k, v in data.items()})
    variables.update({k: str(v) for k, v in (post.get("substitute") or {}).items()})
    return variables


async def build_local(
    kube: ClusterClient | None, ks: Obj, path: str, strict: bool = False, build_seconds: float = 120
) -> list[Obj]:
    from tide.shared.kustomize import build as kbuild
    from tide.shared.kustomize import substitute as ksub
    from tide.shared.kustomize.owner import set_owner_labels

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
    with tempfile.TemporaryDirectory(prefix="tide-build-") as tmp:
        copy = Path(tmp) / "src"
        # The build rewrites kustomization.yaml in place: never touch the user's tree.
        await asyncio.to_thread(
            shutil.copytree, root, copy, symlinks=True, ignore=shutil.ignore_patterns(".git")
        )
        try:
            docs = await kbuild.build(copy, spec, limit=build_seconds, binary=kustomize_binary())
        except kbuild.BuildError as exc:
            raise CliError(
                f"build failed: {exc}", "fix the manifests under --path, then retry", EXIT_USAGE
            ) from None
    objects = [d.obj for d in docs]
    texts: list[str | None] = [d.text for d in docs]
    variables = await postbuild_variables(kube, ks)
    post = spec.get("postBuild") or {}
    if post and (variables or post.get("substituteStrategy") == "Always"):
        try:
            objects = ksub.substitute_objects(objects, variables, strict=strict, texts=texts)
        except ksub.SubstitutionError as exc:
            raise CliError(
                f"substitution failed: {exc}",
                "define the variable in postBuild or give it a default",
                EXIT_USAGE,
            ) from None
    kbuild.apply_common_metadata(objects, spec.get("commonMetadata"))
    for obj in objects:
        set_owner_labels(obj, meta.get("name", ""), meta.get("namespace", ""))
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
