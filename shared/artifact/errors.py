"""Errors raised by the artifact client."""

from __future__ import annotations


class ArtifactError(Exception):
    """The artifact could not be downloaded, verified or extracted."""


class ArtifactNotFound(ArtifactError):
    """The artifact server answered 404: the source has not published it (yet)."""


class ArtifactDigestMismatch(ArtifactError):
    """The downloaded bytes do not hash to the digest advertised in the source's status."""


class TarHeaderTooLarge(ArtifactError):
    """A pax or GNU long-name header larger than a tar reader should ever hold in memory."""


class TooManyEntries(ArtifactError):
    """The tree has more entries (files, directories, symlinks) than the configured limit."""


class ArtifactURLRefused(ArtifactError):
    """status.artifact.url does not point at the source controller's storage: whoever can write a
    source's status could otherwise make the consumer fetch from anywhere."""
