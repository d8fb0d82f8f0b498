"""The build half of a HelmChart, run in build workers: check an untrusted chart archive,
merge values files into it and package it with Helm.

A chart archive from a repository is hostile input: entries that are absolute or climb out
with `..`, links of any kind, devices, files over the per-file limit and archives with more
entries than any chart needs are refused before anything is written. Helm (the SDK, loaded
only here, in the worker) packages: no re-implementation of its chart rules.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tide.shared.artifact import ArtifactError
from tide.shared.artifact.extract import check_member_name
from tide.shared.mapmerge import merge_maps

# Flux's --helm-chart-max-size and --helm-chart-file-max-size defaults.
DEFAULT_CHART_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_CHART_FILE_MAX_SIZE = 5 * 1024 * 1024
# No chart needs more; an archive of millions of empty entries is a bomb, not a chart.
MAX_CHART_ENTRIES = 10_000


class ChartArchiveError(Exception):
    """The archive is no safe chart (message for the condition)."""


class ValuesFilesError(Exception):
    pass


class ChartPackageError(Exception):
    pass


@dataclass(frozen=True)
class ChartLimits:
    max_size: int = DEFAULT_CHART_MAX_SIZE
    max_file_size: int = DEFAULT_CHART_FILE_MAX_SIZE
    max_entries: int = MAX_CHART_ENTRIES


@dataclass(frozen=True)
class Built:
    path: Path
    name: str
    version: str
    observed_values_files: list[str] = field(default_factory=list)
    packaged: bool = False


def _metadata(raw: bytes, where: str) -> tuple[str, str]:
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ChartArchiveError(f"invalid {where}: {exc}") from exc
    if not isinstance(doc, dict) or not doc.get("name") or not doc.get("version"):
        raise ChartArchiveError(f"invalid {where}: name and version are required")
    return str(doc["name"]), str(doc["version"])


def check_archive(archive: Path, limits: ChartLimits) -> tuple[str, str]:
    """Scan every entry of a chart .tgz; returns (name, version) from its Chart.yaml."""
    top: str | None = None
    metadata: tuple[str, str] | None = None
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_entries:
                    raise ChartArchiveError(f"chart archive has more than {limits.max_entries} entries")
                try:
                    rel = check_member_name(member.name)
                except ArtifactError as exc:
                    raise ChartArchiveError(str(exc).replace("artifact", "chart archive")) from exc
                if member.issym() or member.islnk():
                    raise ChartArchiveError(
                        f"illegal link in chart archive: {rel} -> {member.linkname!r} (charts hold no links)"
                    )
                if member.isdir():
                    continue
                if not member.isreg():
                    raise ChartArchiveError(f"unsupported entry type in chart archive: {rel}")
                if member.size > limits.max_file_size:
                    raise ChartArchiveError(
                        f"file '{rel}' in chart archive is {member.size} bytes, over the maximum of "
                        f"{limits.max_file_size} bytes"
                    )
                total += member.size
                if limits.max_size and total > limits.max_size:
                    raise ChartArchiveError(
                        f"chart archive exceeds the maximum extracted size of {limits.max_size} bytes"
                    )
                first = rel.parts[0]
                if top is None:
                    top = first
                elif first != top and len(rel.parts) > 1:
                    raise ChartArchiveError(
                        f"chart archive has more than one top directory: '{top}', '{first}'"
                    )
                if rel == PurePosixPath(first, "Chart.yaml"):
                    source = tar.extractfile(member)
                    if source is None:
                        raise ChartArchiveError("unreadable Chart.yaml in chart archive")
                    with source:
                        metadata = _metadata(source.read(), "Chart.yaml in chart archive")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ChartArchiveError(f"corrupt chart archive: {exc}") from exc
    if metadata is None:
        raise ChartArchiveError("chart archive has no Chart.yaml")
    return metadata


def _extract(archive: Path, dest: Path) -> Path:
    """Extract a checked archive; returns the chart directory."""
    with tarfile.open(archive, mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    dirs = [p for p in dest.iterdir() if p.is_dir()]
    if len(dirs) != 1:
        raise ChartArchiveError("chart archive has no single chart directory")
    return dirs[0]


def merge_values_files(
    chart_dir: Path, root: Path, files: list[str], ignore_missing: bool
) -> tuple[dict[str, Any], list[str]]:
    """The values files merged in order (paths relative to root, which must contain them);
    returns the merged values and the files that were found."""
    merged: dict[str, Any] = {}
    used: list[str] = []
    real_root = root.resolve()
    for name in files:
        rel = PurePosixPath(name.strip())
        if rel.is_absolute() or ".." in rel.parts:
            raise ValuesFilesError(f"values file path '{name}' must be relative and inside the chart source")
        path = (root / rel).resolve()
        if not str(path).startswith(str(real_root) + "/"):
            raise ValuesFilesError(f"values file path '{name}' leaves the chart source")
        if not path.is_file():
            if ignore_missing:
                continue
            raise ValuesFilesError(f"no values file found at path '{name}'")
        try:
            doc = yaml.safe_load(path.read_bytes()) or {}
        except yaml.YAMLError as exc:
            raise ValuesFilesError(f"failed to parse values file '{name}': {exc}") from exc
        if not isinstance(doc, dict):
            raise ValuesFilesError(f"values file '{name}' is no YAML map")
        merged = merge_maps(merged, doc)
        used.append(name)
    return merged, used


def with_metadata(version: str, metadata: str | None) -> str:
    """Flux's version metadata: `<version>+<metadata>`, replacing any the chart had."""
    if not metadata:
        return version
    return f"{version.split('+', 1)[0]}+{metadata}"


def package(chart_dir: Path, out_dir: Path, version: str) -> Path:
    """`helm package` with the Helm SDK (imported here: only build workers pay for it)."""
    from helm_python import chart as helm_chart
    from helm_python.errors import HelmError

    try:
        return Path(helm_chart.package(chart_dir, destination=out_dir, version=version))
    except HelmError as exc:
        raise ChartPackageError(f"chart package error: {exc}") from exc


def build_from_archive(
    archive: Path,
    out_dir: Path,
    limits: ChartLimits,
    values_files: list[str],
    ignore_missing: bool,
    version_metadata: str | None,
) -> Built:
    """A pulled chart: as-is when nothing changes it, else values merged and repackaged."""
    name, version = check_archive(archive, limits)
    if not values_files and not version_metadata:
        return Built(archive, name, version)
    work = Path(tempfile.mkdtemp(prefix="tide-chart-"))
    try:
        chart_dir = _extract(archive, work / "x")
        used: list[str] = []
        if values_files:
            merged, used = merge_values_files(chart_dir, chart_dir, values_files, ignore_missing)
            (chart_dir / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=True))
        new_version = with_metadata(version, version_metadata)
        packaged = package(chart_dir, out_dir, new_version)
        return Built(packaged, name, new_version, used, packaged=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_chart_metadata(chart_dir: Path) -> tuple[str, str]:
    path = chart_dir / "Chart.yaml"
    if not path.is_file():
        raise ChartArchiveError(f"no Chart.yaml found in '{chart_dir.name}'")
    return _metadata(path.read_bytes(), "Chart.yaml")


# -- charts packaged from a source artifact (GitRepository) ----------------------------------


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    repository: str


@dataclass(frozen=True)
class SourceChart:
    root: Path  # the extracted source artifact
    chart_dir: Path
    name: str
    version: str
    missing: list[Dependency]  # declared and not vendored in charts/


def _inside(root: Path, path: Path) -> bool:
    real_root, real = root.resolve(), path.resolve()
    return real == real_root or str(real).startswith(str(real_root) + "/")


def open_source_chart(artifact: Path, dest: Path, chart_path: str, max_size: int) -> SourceChart:
    """Extract a source artifact (the shared safe extraction) and find the chart at chart_path."""
    from tide.shared.artifact import extract_tarball

    rel = PurePosixPath(chart_path.strip() or ".")
    if rel.is_absolute() or ".." in rel.parts:
        raise ChartArchiveError(f"chart path '{chart_path}' must be relative and inside the source")
    try:
        extract_tarball(artifact, dest, max_size or 1 << 62)
    except ArtifactError as exc:
        raise ChartArchiveError(f"failed to extract the source artifact: {exc}") from exc
    chart_dir = dest / rel
    if not _inside(dest, chart_dir) or not chart_dir.is_dir():
        raise ChartArchiveError(f"no chart directory at path '{chart_path}' in the source")
    name, version = read_chart_metadata(chart_dir)
    doc = yaml.safe_load((chart_dir / "Chart.yaml").read_bytes()) or {}
    declared = doc.get("dependencies") or []
    requirements = chart_dir / "requirements.yaml"  # apiVersion v1 charts
    if not declared and requirements.is_file():
        declared = (yaml.safe_load(requirements.read_bytes()) or {}).get("dependencies") or []
    missing = []
    for item in declared:
        if not isinstance(item, dict) or not item.get("name"):
            continue
        dep = Dependency(
            str(item["name"]), str(item.get("version") or "*"), str(item.get("repository") or "")
        )
        vendored = (chart_dir / "charts" / dep.name).is_dir() or any(
            (chart_dir / "charts").glob(f"{dep.name}-*.tgz")
        )
        if not vendored:
            missing.append(dep)
    return SourceChart(dest, chart_dir, name, version, missing)


def package_source_chart(
    source: SourceChart,
    out_dir: Path,
    limits: ChartLimits,
    dependency_archives: list[Path],
    values_files: list[str],
    ignore_missing: bool,
    version: str,
) -> Built:
    """Vendor the fetched and local dependencies into charts/, merge values, `helm package`."""
    charts = source.chart_dir / "charts"
    for dep in source.missing:
        if not dep.repository.startswith("file://"):
            continue
        local = source.chart_dir / dep.repository.removeprefix("file://")
        if not _inside(source.root, local) or not (local / "Chart.yaml").is_file():
            raise ChartPackageError(
                f"dependency build error: local dependency '{dep.name}' at '{dep.repository}' is no chart "
                "inside the source"
            )
        charts.mkdir(exist_ok=True)
        package(local, charts, read_chart_metadata(local)[1])
    for archive in dependency_archives:
        check_archive(archive, limits)
        charts.mkdir(exist_ok=True)
        shutil.copy(archive, charts / archive.name)
    used: list[str] = []
    if values_files:
        merged, used = merge_values_files(source.chart_dir, source.root, values_files, ignore_missing)
        (source.chart_dir / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=True))
    packaged = package(source.chart_dir, out_dir, version)
    check_archive(packaged, limits)
    return Built(packaged, source.name, version, used, packaged=True)
