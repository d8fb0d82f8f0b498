"""Artifact client: download a source artifact, verify its digest, extract it safely."""

from tide.shared.artifact.client import fetch_artifact, verify_digest
from tide.shared.artifact.errors import (
    ArtifactDigestMismatch,
    ArtifactError,
    ArtifactNotFound,
    TarHeaderTooLarge,
    TooManyEntries,
)
from tide.shared.artifact.extract import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_EXTRACTED_SIZE, extract_tarball

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_EXTRACTED_SIZE",
    "ArtifactDigestMismatch",
    "ArtifactError",
    "ArtifactNotFound",
    "TarHeaderTooLarge",
    "TooManyEntries",
    "extract_tarball",
    "fetch_artifact",
    "verify_digest",
]
