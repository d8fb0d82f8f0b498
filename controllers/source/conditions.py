"""The condition types every source kind reports, as Flux's source-controller names them."""

from __future__ import annotations

READY = "Ready"
ARTIFACT_IN_STORAGE = "ArtifactInStorage"
ARTIFACT_OUTDATED = "ArtifactOutdated"
FETCH_FAILED = "FetchFailed"
SOURCE_VERIFIED = "SourceVerified"
STORAGE_FAILED = "StorageOperationFailed"

# Reasons, as Flux's source-controller names them.
GIT_OPERATION_FAILED = "GitOperationFailed"
AUTHENTICATION_FAILED = "AuthenticationFailed"
READ_FAILED = "ReadOperationFailed"
PULL_FAILED = "OCIArtifactPullFailed"
LAYER_FAILED = "OCIArtifactLayerOperationFailed"
ARCHIVE_FAILED = "ArchiveOperationFailed"
URL_INVALID = "URLInvalid"
