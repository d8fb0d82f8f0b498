"""source.extensions.fluxcd.io/v1beta1: ArtifactGenerator (Flux's source-watcher).

An ArtifactGenerator composes the artifacts of sources (GitRepository, OCIRepository, Bucket,
HelmChart, ExternalArtifact) into one ExternalArtifact per entry of spec.artifacts, with
`cp`-like copy operations from `@alias/<glob>` to `@artifact/<path>`.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .meta import (
    AGE,
    READY,
    STATUS,
    CommonMetadata,
    FluxModel,
    KubeObject,
    ObjectStatus,
    PrinterColumn,
    Spec,
    cel_rules,
)

GROUP = "source.extensions.fluxcd.io"
EXTERNAL_ARTIFACT_GATE = "ExternalArtifact"
"""Flux's feature gate for ExternalArtifact sources (kustomize) and chartRefs (helm). On by default
here: the ArtifactGenerator that makes them is part of Tide's source controller."""
FINALIZER = "source.extensions.fluxcd.io/finalizer"
GENERATOR_LABEL = "source.extensions.fluxcd.io/generator"
RECONCILE_ANNOTATION = "source.extensions.fluxcd.io/reconcile"
ORIGIN_REVISION_KEY = "org.opencontainers.image.revision"
ALIAS_PATTERN = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"
ALIAS_REF_PATTERN = r"^@([a-z0-9]([a-z0-9_-]*[a-z0-9])?)$"
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class GeneratorSourceReference(FluxModel):
    """A source whose artifact is an input, known in copy operations as `@<alias>`."""

    alias: str = Field(max_length=63, pattern=ALIAS_PATTERN)
    """Unique per ArtifactGenerator: lower case alphanumerics, '-' and '_'."""
    name: str = Field(max_length=253, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    namespace: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )
    """Defaults to the ArtifactGenerator's namespace."""
    kind: Literal["Bucket", "GitRepository", "OCIRepository", "HelmChart", "ExternalArtifact"]


class CopyOperation(FluxModel):
    """Copy files from a source (`@alias/<glob>`) into the artifact (`@artifact/<path>`)."""

    from_: str = Field(
        alias="from", min_length=1, max_length=1024, pattern=r"^@([a-z0-9]([a-z0-9_-]*[a-z0-9])?)/(.*)$"
    )
    to: str = Field(min_length=1, max_length=1024, pattern=r"^@(artifact)/(.*)$")
    """A trailing slash copies into that directory."""
    exclude: list[str] | None = Field(default=None, max_length=100)
    """Glob patterns (with `**`) of matched files to leave out; without '/' they match file names."""
    strategy: Literal["Overwrite", "Merge", "Extract"] | None = None
    """Overwrite (default), Merge (YAML, Helm values semantics) or Extract (.tar.gz/.tgz)."""


class OutputArtifact(FluxModel):
    """One ExternalArtifact to generate."""

    name: str = Field(min_length=1, max_length=253)
    revision: str | None = Field(default=None, max_length=64, pattern=ALIAS_REF_PATTERN)
    """`@alias`: use that source's revision; default `latest@<digest>` of the content."""
    origin_revision: str | None = Field(default=None, max_length=64, pattern=ALIAS_REF_PATTERN)
    """`@alias`: record that source's origin revision in the artifact metadata."""
    copy_: list[CopyOperation] = Field(alias="copy", min_length=1)
    """Copy operations, in order; later ones overwrite earlier ones."""


class ArtifactGeneratorSpec(Spec):
    model_config = cel_rules(
        (
            "has(self.pathPattern) && size(self.pathPattern) > 0 || self.artifacts.all(a, a.name.matches("
            "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))",
            "artifact names must be valid Kubernetes object names when pathPattern is not set",
        )
    )

    common_metadata: CommonMetadata | None = None
    """Labels and annotations set on every generated ExternalArtifact."""
    sources: list[GeneratorSourceReference] = Field(min_length=1, max_length=1000)
    path_pattern: str | None = Field(
        default=None, max_length=1024, pattern=r"^@([a-z0-9]([a-z0-9_-]*[a-z0-9])?)/(.*)$"
    )
    """Directory discovery (`@alias/apps/{app}`); not supported by Tide yet."""
    artifacts: list[OutputArtifact] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _names_are_object_names(self) -> ArtifactGeneratorSpec:
        if not self.path_pattern:
            bad = [a.name for a in self.artifacts if not re.fullmatch(OBJECT_NAME_PATTERN, a.name)]
            if bad:
                raise ValueError(f"artifact names must be valid Kubernetes object names: {', '.join(bad)}")
        return self


class ExternalArtifactReference(FluxModel):
    """A generated ExternalArtifact and the digest of its artifact."""

    name: str
    namespace: str
    digest: str
    filename: str


class ArtifactGeneratorStatus(ObjectStatus):
    inventory: list[ExternalArtifactReference] | None = None
    observed_sources_digest: str | None = None
    """A hash of the sources' artifacts (digest, revision, URL) the inventory was built from."""


class ArtifactGenerator(KubeObject):
    """Composes and decomposes source artifacts into ExternalArtifacts."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1beta1"
    kind: ClassVar[str] = "ArtifactGenerator"
    categories: ClassVar[tuple[str, ...]] = ("all", "fluxcd", "fluxcd-sources")
    crd_annotations: ClassVar[dict[str, str]] = {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}
    plural: ClassVar[str] = "artifactgenerators"
    singular: ClassVar[str] = "artifactgenerator"
    short_names: ClassVar[tuple[str, ...]] = ("ag",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (AGE, READY, STATUS)

    spec: ArtifactGeneratorSpec
    status: ArtifactGeneratorStatus = Field(default_factory=ArtifactGeneratorStatus)

    def is_suspended(self) -> bool:
        """Flux's source-watcher pauses on the reconcile annotation set to 'disabled'."""
        value = (self.metadata.annotations or {}).get(RECONCILE_ANNOTATION, "")
        return value.lower() == "disabled"
