"""Artifact client: download a source artifact, verify its digest, extract it safely."""

from tide.shared.artifact.client import check_artifact_url, fetch_artifact, verify_digest
from tide.shared.artifact.errors import (
    ArtifactDigestMismatch,
    ArtifactError,
    ArtifactNotFound,
    ArtifactURLRefused,
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
    "ArtifactURLRefused",
    "TarHeaderTooLarge",
    "TooManyEntries",
    "check_artifact_url",
    "extract_tarball",
    "fetch_artifact",
    "verify_digest",
]
