"""Tide's install manifests, from one source: the Helm chart in charts/tide.

`tide install`, `tide install --export` and `tide bootstrap` render the chart with the real `helm template`
(never a copy of it), so the chart, the CLI and the bootstrap repository always install the same objects.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tide.cli.errors import EXIT_USAGE, CliError

Obj = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ("source-controller", "kustomize-controller", "notification-controller", "helm-controller")
_VALUES_KEY = {
    "source-controller": "sourceController",
    "kustomize-controller": "kustomizeController",
    "notification-controller": "notificationController",
    "helm-controller": "helmController",
}
DEFAULT_COMPONENTS = COMPONENTS  # Flux's default components, the helm controller among them


def chart_path(explicit: str | None = None) -> Path:
    candidates = [explicit, os.environ.get("TIDE_CHART"), str(REPO_ROOT / "charts" / "tide")]
    for c in candidates:
        if c and (Path(c) / "Chart.yaml").is_file():
            return Path(c)
    raise CliError(
        "cannot find Tide's Helm chart", "pass --chart <dir> or set TIDE_CHART to charts/tide", EXIT_USAGE
    )


def helm_binary() -> str:
    for c in (os.environ.get("TIDE_HELM"), shutil.which("helm"), str(REPO_ROOT / ".tide" / "bin" / "helm")):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise CliError(
        "cannot find the helm binary to render Tide's chart",
        "run `tools/build.sh helm` (or put helm on PATH, or set TIDE_HELM)",
        EXIT_USAGE,
    )


@dataclass
class RenderOptions:
    namespace: str = "flux-system"
    components: tuple[str, ...] = DEFAULT_COMPONENTS
    crds_only: bool = False
    image_repository: str | None = None
    image_tag: str | None = None
    values_files: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    chart: str | None = None


def built_components() -> tuple[str, ...]:
    """The components whose program (`tide-<component>`, the chart's container command) this Tide
    ships: the chart can describe a controller before it exists."""
    from importlib.metadata import entry_points

    scripts = {e.name for e in entry_points(group="console_scripts")}
    return tuple(c for c in COMPONENTS if f"tide-{c}" in scripts)


def check_components(components: tuple[str, ...], built: tuple[str, ...]) -> None:
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise CliError(
            f"unknown component(s) {', '.join(unknown)}", f"choose from {', '.join(built)}", EXIT_USAGE
        )
    missing = [c for c in components if c not in built]
    if missing:
        raise CliError(
            f"{', '.join(missing)} is not part of this Tide release yet: its Deployment would run a "
            f"program that does not exist",
            f"choose from {', '.join(built)} (README: Not yet)",
            EXIT_USAGE,
        )


def helm_args(opts: RenderOptions) -> list[str]:
    check_components(opts.components, built_components())
    args = [
        "template",
        "tide",
        str(chart_path(opts.chart)),
        "--namespace",
        opts.namespace,
        "--include-crds",
        "--set",
        "createNamespace=true",
    ]
    for comp in COMPONENTS:
        args += ["--set", f"{_VALUES_KEY[comp]}.enabled={'true' if comp in opts.components else 'false'}"]
    if opts.image_repository:
        args += ["--set", f"image.repository={opts.image_repository}"]
    if opts.image_tag:
        args += ["--set", f"image.tag={opts.image_tag}"]
    for f in opts.values_files:
        args += ["--values", f]
    for s in opts.sets:
        args += ["--set", s]
    return args


async def render(opts: RenderOptions, render_seconds: float = 60) -> list[Obj]:
    args = helm_args(opts)  # a refused component is said before a missing helm
    proc = await asyncio.create_subprocess_exec(
        helm_binary(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), render_seconds)
    except TimeoutError:
        proc.kill()
        raise CliError(
            "helm template timed out", "retry; check the chart with `helm lint charts/tide`"
        ) from None
    if proc.returncode != 0:
        raise CliError(
            f"rendering the chart failed: {err.decode().strip()}",
            "check --values/--set and `helm lint charts/tide`",
            EXIT_USAGE,
        )
    docs = [d for d in yaml.safe_load_all(out.decode()) if d]
    if opts.crds_only:
        docs = [d for d in docs if d.get("kind") in ("Namespace", "CustomResourceDefinition")]
    return sort_for_apply(docs)


_ORDER = {
    "Namespace": 0,
    "CustomResourceDefinition": 1,
    "ServiceAccount": 2,
    "ClusterRole": 3,
    "Role": 3,
    "ClusterRoleBinding": 4,
    "RoleBinding": 4,
}


def sort_for_apply(docs: list[Obj]) -> list[Obj]:
    """Namespaces and CRDs first (like Flux's install), then identities, then the rest; stable otherwise."""
    return sorted(docs, key=lambda d: _ORDER.get(d.get("kind", ""), 5))


def crd_names(docs: list[Obj]) -> list[str]:
    return [d["metadata"]["name"] for d in docs if d.get("kind") == "CustomResourceDefinition"]


def chart_crd_names(chart: str | None = None) -> list[str]:
    """CRD names straight from charts/tide/crds (what `tide check` expects in the cluster)."""
    names = []
    for path in sorted((chart_path(chart) / "crds").glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names.append(doc["metadata"]["name"])
    return names


def header(opts: RenderOptions) -> str:
    from tide.cli.commands.version import client_version

    what = "CRDs only (controllers run outside the cluster)" if opts.crds_only else ", ".join(opts.components)
    return (
        f"# Tide v{client_version()} components: {what}\n"
        f"# Generated by `tide install --export` from charts/tide; do not edit by hand.\n"
    )
