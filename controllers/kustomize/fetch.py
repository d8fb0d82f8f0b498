"""Fetch: find the Kustomization's source, and download its artifact into a fresh directory."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tide.shared.artifact import ArtifactError, ArtifactNotFound, fetch_artifact

SOURCE_GROUP_VERSION = "source.toolkit.fluxcd.io/v1"
SERVED_SOURCE_KINDS = ("GitRepository", "OCIRepository", "Bucket")


class SourceNotReady(Exception):
    """The source is missing or has no artifact yet: retry later, not a user error in this object."""


def artifact_of(source: dict[str, Any] | None) -> dict[str, Any] | None:
    if not source:
        return None
    artifact = (source.get("status") or {}).get("artifact")
    return artifact if isinstance(artifact, dict) and artifact.get("url") else None


async def download(artifact: dict[str, Any]) -> Path:
    """The artifact extracted into a new temporary directory (the caller removes it)."""
    dest = Path(tempfile.mkdtemp(prefix="tide-kustomize-"))
    try:
        await fetch_artifact(artifact["url"], artifact.get("digest", ""), dest)
    except ArtifactNotFound as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise SourceNotReady(f"artifact not found at {artifact['url']}: {err}") from err
    except ArtifactError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest
