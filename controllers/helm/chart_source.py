"""Where a HelmRelease's chart comes from (pure): the HelmChart made from `spec.chart` and whether
it must be applied again, whether a chart source is ready, the chart directory in an extracted
artifact, and the version an OCIRepository or ExternalArtifact chart is released as
(`<version>+<digest[:12]>`, so a new digest upgrades)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tide.controllers.helm.postrender import ORIGIN_GROUP
from tide.shared.api.helm import HelmRelease

SOURCE_API = "source.toolkit.fluxcd.io/v1"
CHART_REF_KINDS = ("HelmChart", "OCIRepository", "ExternalArtifact")
EXTERNAL_ARTIFACT = "ExternalArtifact"


class ChartInvalid(Exception):
    """The artifact holds no loadable chart (no Chart.yaml, not YAML, no name or version)."""


class ChartSourceNotReady(Exception):
    """The chart source has no artifact (for this generation) yet."""


def helm_chart_object(hr: HelmRelease) -> dict[str, Any]:
    """The HelmChart `<ns>-<name>` the controller creates from spec.chart, in the source's namespace."""
    assert hr.spec.chart is not None
    template = hr.spec.chart
    spec = template.spec
    labels = dict((template.metadata.labels if template.metadata else None) or {})
    labels.update({f"{ORIGIN_GROUP}/name": hr.name, f"{ORIGIN_GROUP}/namespace": hr.namespace})
    annotations = (template.metadata.annotations if template.metadata else None) or None
    values_files = list(spec.values_files or [])
    if spec.values_file and spec.values_file not in values_files:
        values_files.insert(0, spec.values_file)  # v2beta1's valuesFile, mapped as Flux does
    chart_spec: dict[str, Any] = {
        "chart": spec.chart,
        "version": spec.version or "*",
        "sourceRef": {"kind": spec.source_ref.kind, "name": spec.source_ref.name},
        "interval": spec.interval or hr.spec.interval,
        "reconcileStrategy": spec.reconcile_strategy or "ChartVersion",
    }
    if values_files:
        chart_spec["valuesFiles"] = values_files
    if spec.ignore_missing_values_files:
        chart_spec["ignoreMissingValuesFiles"] = True
    if spec.verify is not None:
        chart_spec["verify"] = spec.verify.model_dump(mode="json", by_alias=True, exclude_none=True)
    metadata: dict[str, Any] = {
        "name": hr.helm_chart_name(),
        "namespace": hr.helm_chart_namespace(),
        "labels": labels,
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": SOURCE_API, "kind": "HelmChart", "metadata": metadata, "spec": chart_spec}


@dataclass(frozen=True)
class AppliedChart:
    """What the controller last applied of a HelmChart, and the generation the apply left."""

    wanted: dict[str, Any]
    generation: int


def chart_needs_apply(
    wanted: dict[str, Any], last: AppliedChart | None, cached: dict[str, Any] | None
) -> bool:
    """Whether the HelmChart must be applied again (pure): always, unless this controller applied
    the very same object and the cached HelmChart is still at the generation that apply left, with
    its labels and annotations in place. Flux compares before it writes too; an apply that changes
    nothing still costs the API server a full server-side apply, at every reconcile."""
    if last is None or cached is None or last.wanted != wanted:
        return True
    meta = cached.get("metadata") or {}
    if meta.get("generation") != last.generation or meta.get("deletionTimestamp"):
        return True
    kept = wanted["metadata"]
    return any(
        (meta.get(field) or {}).get(key) != value
        for field in ("labels", "annotations")
        for key, value in (kept.get(field) or {}).items()
    )


def ready_artifact(source: dict[str, Any], what: str) -> dict[str, Any]:
    """The source's artifact, once it is Ready at its current generation (Flux's readiness test)."""
    status = source.get("status") or {}
    generation = (source.get("metadata") or {}).get("generation")
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    artifact = status.get("artifact")
    if status.get("observedGeneration") != generation or not isinstance(artifact, dict):
        raise ChartSourceNotReady(f"{what} is not ready: latest generation of object has not been reconciled")
    if ready is None or ready.get("status") != "True":
        message = (ready or {}).get("message") or "no Ready condition"
        raise ChartSourceNotReady(f"{what} is not ready: {message}")
    if not artifact.get("url") or not artifact.get("digest"):
        raise ChartSourceNotReady(f"{what} is not ready: its artifact has no URL or digest")
    return artifact


def chart_source_artifact(kind: str, source: dict[str, Any], what: str) -> dict[str, Any]:
    """The chart source's artifact as Flux accepts it: an ExternalArtifact only needs one (its
    producer reports no generation); the other kinds must be Ready at their generation."""
    if kind != EXTERNAL_ARTIFACT:
        return ready_artifact(source, what)
    artifact = (source.get("status") or {}).get("artifact")
    if not isinstance(artifact, dict) or not artifact.get("url") or not artifact.get("digest"):
        raise ChartSourceNotReady(f"{what} is not ready: does not have an artifact")
    return artifact


def versioned_by_digest(kind: str, revision: str) -> bool:
    """Flux appends the source's digest to the chart version for an OCIRepository, and for an
    ExternalArtifact whose revision holds a digest (`<algo>:<hex>`) rather than a version."""
    return kind == "OCIRepository" or (kind == EXTERNAL_ARTIFACT and ":" in revision)


def chart_directory(root: Path) -> Path:
    """The chart in an extracted artifact: the root itself, or its one directory with a Chart.yaml."""
    if (root / "Chart.yaml").is_file():
        return root
    candidates = [p for p in sorted(root.iterdir()) if p.is_dir() and (p / "Chart.yaml").is_file()]
    if len(candidates) != 1:
        raise ChartInvalid("the artifact holds no chart: expected one directory with a Chart.yaml")
    return candidates[0]


def chart_metadata(chart: Path) -> tuple[str, str]:
    """(name, version) from Chart.yaml."""
    try:
        metadata = yaml.safe_load((chart / "Chart.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ChartInvalid(f"cannot read Chart.yaml: {err}") from err
    if not isinstance(metadata, dict) or not metadata.get("name") or not metadata.get("version"):
        raise ChartInvalid("Chart.yaml has no name or version")
    return str(metadata["name"]), str(metadata["version"])


_SEMVER = re.compile(
    r"^v?(?P<major>[0-9]+)(?:\.(?P<minor>[0-9]+))?(?:\.(?P<patch>[0-9]+))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


def _semver(text: str) -> tuple[int, int, int, str] | None:
    """A version as Flux's semver library reads one loosely (`v` prefix, missing minor or patch),
    build metadata left out, as its comparison does; None when it is no version."""
    match = _SEMVER.match(text)
    if match is None:
        return None
    major, minor, patch = (int(match.group(k) or 0) for k in ("major", "minor", "patch"))
    return major, minor, patch, match.group("pre") or ""


def oci_chart_version(version: str, revision: str) -> tuple[str, str]:
    """Flux's version for an OCIRepository or ExternalArtifact chart, `<version>+<digest[:12]>`, and
    the digest it records (lastAttemptedRevisionDigest, the snapshot's ociDigest).

    The revision is `<tag>@<algo>:<hex>` or `<algo>:<hex>`. A tag that is a version (OCI tags spell
    `+` as `_`) must be the chart's version, and the digest alone is recorded; otherwise Flux
    records the whole revision."""
    tag, at, digest = revision.rpartition("@")
    tag_version = _semver(tag.replace("_", "+")) if at else None
    if tag_version is None:
        digest = revision
    _, colon, encoded = digest.rpartition("@")[2].partition(":")
    if not colon or len(encoded) < 12:
        raise ChartInvalid(f"cannot read a digest from the artifact revision '{revision}'")
    if tag_version is not None and tag_version != _semver(version):
        raise ChartInvalid(f"artifact revision '{revision}' does not match chart version '{version}'")
    return f"{version.split('+', 1)[0]}+{encoded[:12]}", digest


def set_chart_version(chart: Path, version: str) -> None:
    """Rewrite Chart.yaml's version (the OCI digest suffix) before Helm loads the chart. A new file
    replaces it: the chart's files are hard links into the controller's chart cache."""
    path = chart / "Chart.yaml"
    metadata = yaml.safe_load(path.read_text())
    metadata["version"] = version
    rewritten = path.with_name(".Chart.yaml.tide")
    rewritten.write_text(yaml.safe_dump(metadata, sort_keys=False))
    os.replace(rewritten, path)
