"""The Flux kinds the CLI knows, with the words people type for them."""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "source.toolkit.fluxcd.io/v1"
KUSTOMIZE = "kustomize.toolkit.fluxcd.io/v1"
HELM = "helm.toolkit.fluxcd.io/v2"
NOTIFICATION_V1BETA3 = "notification.toolkit.fluxcd.io/v1beta3"
NOTIFICATION_V1 = "notification.toolkit.fluxcd.io/v1"


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str
    words: tuple[str, ...]  # what `tide get <words>` accepts
    source: bool = False
    reconcilable: bool = True  # has Ready and honours reconcile.fluxcd.io/requestedAt

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0]

    @property
    def lower(self) -> str:
        return self.kind.lower()


GIT_REPOSITORY = Kind("GitRepository", SOURCE, ("git", "gitrepository", "gitrepositories", "gitrepo"), True)
OCI_REPOSITORY = Kind("OCIRepository", SOURCE, ("oci", "ocirepository", "ocirepositories", "ocirepo"), True)
HELM_REPOSITORY = Kind(
    "HelmRepository", SOURCE, ("helm", "helmrepository", "helmrepositories", "helmrepo"), True
)
HELM_CHART = Kind("HelmChart", SOURCE, ("chart", "helmchart", "helmcharts", "hc"), True)
BUCKET = Kind("Bucket", SOURCE, ("bucket", "buckets"), True)
KUSTOMIZATION = Kind("Kustomization", KUSTOMIZE, ("kustomization", "kustomizations", "ks"))
HELM_RELEASE = Kind("HelmRelease", HELM, ("helmrelease", "helmreleases", "hr"))
ALERT = Kind("Alert", NOTIFICATION_V1BETA3, ("alert", "alerts"), reconcilable=False)
PROVIDER = Kind(
    "Provider",
    NOTIFICATION_V1BETA3,
    ("alert-provider", "alert-providers", "provider", "providers"),
    reconcilable=False,
)
RECEIVER = Kind("Receiver", NOTIFICATION_V1, ("receiver", "receivers"))

SOURCES = (GIT_REPOSITORY, OCI_REPOSITORY, HELM_REPOSITORY, HELM_CHART, BUCKET)
ALL = (*SOURCES, KUSTOMIZATION, HELM_RELEASE, ALERT, PROVIDER, RECEIVER)
BY_KIND = {k.kind: k for k in ALL}


def source_kind(word: str) -> Kind:
    for k in SOURCES:
        if word.lower() in k.words:
            return k
    raise KeyError(word)


def kind_by_word(word: str) -> Kind:
    for k in ALL:
        if word.lower() in k.words or word.lower() == k.lower:
            return k
    raise KeyError(word)


def parse_ref(ref: str, default: Kind | None = None) -> tuple[Kind, str]:
    """`Kustomization/name` or `gitrepository/name` (or a bare name with a default kind)."""
    if "/" in ref:
        kind_word, name = ref.split("/", 1)
        return kind_by_word(kind_word), name
    if default is None:
        raise KeyError(ref)
    return default, ref
