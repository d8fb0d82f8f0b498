"""Pure builders for the objects the CLI creates and the YAML it prints."""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from tide.cli.kinds import (
    GIT_REPOSITORY,
    HELM_CHART,
    HELM_RELEASE,
    HELM_REPOSITORY,
    KUSTOMIZATION,
    OCI_REPOSITORY,
    RECEIVER,
    Kind,
    kind_by_word,
)
from tide.shared.api.meta import format_duration, parse_duration
from tide.shared.mapmerge import merge_maps

Obj = dict[str, Any]

CRDS_POLICIES = ("Skip", "Create", "CreateReplace")
CHART_SOURCE_KINDS = {
    "helmrepository": "HelmRepository",
    "gitrepository": "GitRepository",
    "bucket": "Bucket",
}
CHART_REF_KINDS = {"ocirepository": "OCIRepository", "helmchart": "HelmChart"}
VALUES_FROM_KINDS = {"secret": "Secret", "configmap": "ConfigMap"}


def go_duration(text: str) -> str:
    """Normalise to Go's time.Duration.String() as Flux prints it: 1m -> 1m0s, 90s -> 1m30s, 2h -> 2h0m0s."""
    return format_duration(parse_duration(text, go=True), go=True)


def git_repository(
    name: str,
    namespace: str,
    url: str,
    interval: str = "1m",
    branch: str | None = None,
    tag: str | None = None,
    semver: str | None = None,
    commit: str | None = None,
    ref_name: str | None = None,
    secret_ref: str | None = None,
    ignore_paths: list[str] | None = None,
    recurse_submodules: bool = False,
    timeout: str | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    if not re.match(r"^(http|https|ssh)://", url):
        raise ValueError(
            f"git URL {url!r} must start with http://, https:// or ssh:// (scp-like syntax is not supported)"
        )
    ref: dict[str, str] = {}
    if commit:
        ref["commit"] = commit
    if ref_name:
        ref["name"] = ref_name
    if semver:
        ref["semver"] = semver
    if tag:
        ref["tag"] = tag
    if branch or not ref:
        ref["branch"] = branch or "master"
    spec: Obj = {"interval": go_duration(interval), "ref": ref}
    if secret_ref:
        spec["secretRef"] = {"name": secret_ref}
    if ignore_paths:
        spec["ignore"] = "\n".join(ignore_paths)
    if recurse_submodules:
        spec["recurseSubmodules"] = True
    if timeout:
        spec["timeout"] = go_duration(timeout)
    spec["url"] = url
    return _object(GIT_REPOSITORY, name, namespace, spec, labels)


def oci_repository(
    name: str,
    namespace: str,
    url: str,
    interval: str = "1m",
    tag: str | None = None,
    semver: str | None = None,
    digest: str | None = None,
    secret_ref: str | None = None,
    ignore_paths: list[str] | None = None,
    insecure: bool = False,
    labels: dict[str, str] | None = None,
) -> Obj:
    """As `flux create source oci`: the tag defaults to `latest` when no other reference is given."""
    if not url.startswith("oci://"):
        raise ValueError(f"OCI URL {url!r} must start with oci://")
    ref: dict[str, str] = {}
    if digest:
        ref["digest"] = digest
    if semver:
        ref["semver"] = semver
    if tag or not ref:
        ref["tag"] = tag or "latest"
    spec: Obj = {"interval": go_duration(interval), "ref": ref, "url": url}
    if secret_ref:
        spec["secretRef"] = {"name": secret_ref}
    if ignore_paths:
        spec["ignore"] = "\n".join(ignore_paths)
    if insecure:
        spec["insecure"] = True
    return _object(OCI_REPOSITORY, name, namespace, spec, labels)


def helm_repository(
    name: str,
    namespace: str,
    url: str,
    interval: str = "1m",
    secret_ref: str | None = None,
    pass_credentials: bool = False,
    timeout: str | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    """As `flux create source helm`: an oci:// URL makes an OCI HelmRepository."""
    if not re.match(r"^(http|https|oci)://", url):
        raise ValueError(f"Helm repository URL {url!r} must start with http://, https:// or oci://")
    spec: Obj = {"interval": go_duration(interval), "url": url}
    if url.startswith("oci://"):
        spec["type"] = "oci"
    if secret_ref:
        spec["secretRef"] = {"name": secret_ref}
    if pass_credentials:
        spec["passCredentials"] = True
    if timeout:
        spec["timeout"] = go_duration(timeout)
    return _object(HELM_REPOSITORY, name, namespace, spec, labels)


def helm_chart(
    name: str,
    namespace: str,
    source: str,
    chart: str,
    interval: str = "1m",
    version: str | None = None,
    reconcile_strategy: str | None = None,
    values_files: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    """As `flux create source chart`: --source is <kind>/<name> (HelmRepository, GitRepository, Bucket)."""
    kind_word, _, source_name = source.partition("/")
    kinds = CHART_SOURCE_KINDS
    if not source_name or kind_word.lower() not in kinds:
        raise ValueError(
            f"invalid source {source!r}: expected <kind>/<name> "
            "with kind HelmRepository, GitRepository or Bucket"
        )
    spec: Obj = {
        "chart": chart,
        "interval": go_duration(interval),
        "sourceRef": {"kind": kinds[kind_word.lower()], "name": source_name},
    }
    if version:
        spec["version"] = version
    if reconcile_strategy:
        if reconcile_strategy not in ("ChartVersion", "Revision"):
            raise ValueError(f"invalid reconcile strategy {reconcile_strategy!r}: ChartVersion or Revision")
        spec["reconcileStrategy"] = reconcile_strategy
    if values_files:
        spec["valuesFiles"] = list(values_files)
    return _object(HELM_CHART, name, namespace, spec, labels)


def parse_source_ref(text: str, namespace: str) -> Obj:
    """`[<kind>/]<name>[.<namespace>]` as Flux's --source; kind defaults to GitRepository."""
    kind = GIT_REPOSITORY.kind
    if "/" in text:
        kind_word, text = text.split("/", 1)
        kind = kind_by_word(kind_word).kind
    ref: Obj = {"kind": kind}
    if "." in text:
        name, ns = text.split(".", 1)
        ref["name"] = name
        if ns != namespace:
            ref["namespace"] = ns
    else:
        ref["name"] = text
    return ref


def kustomization(
    name: str,
    namespace: str,
    source: str,
    path: str = "./",
    prune: bool = False,
    interval: str = "1m",
    target_namespace: str | None = None,
    depends_on: list[str] | None = None,
    wait: bool = False,
    health_checks: list[str] | None = None,
    service_account: str | None = None,
    retry_interval: str | None = None,
    health_check_timeout: str | None = None,
    decryption_provider: str | None = None,
    decryption_secret: str | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    spec: Obj = {"interval": go_duration(interval)}
    if depends_on:
        spec["dependsOn"] = []
        for dep in depends_on:  # Flux accepts <name> or <namespace>/<name>
            if "/" in dep:
                dep_ns, dep_name = dep.split("/", 1)
                spec["dependsOn"].append({"name": dep_name, "namespace": dep_ns})
            else:
                spec["dependsOn"].append({"name": dep})
    if decryption_provider:
        spec["decryption"] = {"provider": decryption_provider}
        if decryption_secret:
            spec["decryption"]["secretRef"] = {"name": decryption_secret}
    if health_checks:
        checks = []
        for hc in health_checks:  # <kind>/<name>.<namespace>
            kind, _, rest = hc.partition("/")
            hc_name, _, hc_ns = rest.partition(".")
            api_version = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1"}.get(
                kind, ""
            )
            check: Obj = {"kind": kind, "name": hc_name, "namespace": hc_ns or namespace}
            if api_version:
                check = {"apiVersion": api_version, **check}
            checks.append(check)
        spec["healthChecks"] = checks
    spec["path"] = path
    spec["prune"] = prune
    if retry_interval:
        spec["retryInterval"] = go_duration(retry_interval)
    if service_account:
        spec["serviceAccountName"] = service_account
    spec["sourceRef"] = parse_source_ref(source, namespace)
    if target_namespace:
        spec["targetNamespace"] = target_namespace
    if health_check_timeout:
        spec["timeout"] = go_duration(health_check_timeout)
    if wait:
        spec["wait"] = True
    return _object(KUSTOMIZATION, name, namespace, spec, labels)


def _kind_name_namespace(text: str, kinds: dict[str, str], flag: str) -> tuple[str, str, str]:
    """`<kind>/<name>[.<namespace>]`, kind one of `kinds` (any case), as Flux's --source/--chart-ref."""
    kind_word, _, rest = text.partition("/")
    name, _, namespace = rest.partition(".")
    if not name or kind_word.lower() not in kinds:
        raise ValueError(
            f"invalid {flag} {text!r}: expected <kind>/<name>[.<namespace>] "
            f"with kind one of {', '.join(kinds.values())}"
        )
    return kinds[kind_word.lower()], name, namespace


def _ref(kind: str, name: str, namespace: str) -> Obj:
    ref: Obj = {"kind": kind, "name": name}
    if namespace:
        ref["namespace"] = namespace
    return ref


def _sorted_keys(value: Any) -> Any:
    """Flux marshals objects through JSON, so every map in its YAML has sorted keys."""
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def helm_release(
    name: str,
    namespace: str,
    source: str | None = None,
    chart: str | None = None,
    chart_ref: str | None = None,
    chart_version: str | None = None,
    chart_interval: str | None = None,
    reconcile_strategy: str | None = None,
    interval: str = "1m",
    release_name: str | None = None,
    target_namespace: str | None = None,
    storage_namespace: str | None = None,
    create_target_namespace: bool = False,
    depends_on: list[str] | None = None,
    values: list[Obj] | None = None,
    values_from: list[str] | None = None,
    crds: str | None = None,
    service_account: str | None = None,
    kubeconfig_secret_ref: str | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    """As `flux create helmrelease`: a chart template (--source and --chart) or a --chart-ref, values files
    deep-merged in order, and the storage namespace defaulting to the target namespace."""
    spec: Obj = {"interval": go_duration(interval)}
    if chart and chart_ref:
        raise ValueError("cannot use --chart in combination with --chart-ref")
    if chart_ref:
        spec["chartRef"] = _ref(*_kind_name_namespace(chart_ref, CHART_REF_KINDS, "--chart-ref"))
    elif chart:
        if not source:
            raise ValueError("--chart needs --source: <kind>/<name>[.<namespace>]")
        if reconcile_strategy is not None and reconcile_strategy not in ("ChartVersion", "Revision"):
            raise ValueError(f"invalid reconcile strategy {reconcile_strategy!r}: ChartVersion or Revision")
        template: Obj = {
            "chart": chart,
            "reconcileStrategy": reconcile_strategy or "ChartVersion",
            "sourceRef": _ref(*_kind_name_namespace(source, CHART_SOURCE_KINDS, "--source")),
        }
        if chart_version:
            template["version"] = chart_version
        if chart_interval:
            template["interval"] = go_duration(chart_interval)
        spec["chart"] = {"spec": template}
    else:
        raise ValueError("--chart (with --source) or --chart-ref is required")
    if release_name:
        spec["releaseName"] = release_name
    if target_namespace:
        spec["targetNamespace"] = target_namespace
    if storage_namespace or target_namespace:
        spec["storageNamespace"] = storage_namespace or target_namespace
    install: Obj = {}
    if create_target_namespace:
        install["createNamespace"] = True
    if crds:
        if crds not in CRDS_POLICIES:
            raise ValueError(f"invalid --crds {crds!r}: one of {', '.join(CRDS_POLICIES)}")
        install["crds"] = "Create"  # Flux: the install policy is Create, the flag sets the upgrade policy
        spec["upgrade"] = {"crds": crds}
    if install:
        spec["install"] = install
    if depends_on:
        spec["dependsOn"] = []
        for dep in depends_on:  # <name> or <namespace>/<name>
            dep_ns, _, dep_name = dep.rpartition("/")
            spec["dependsOn"].append({"name": dep_name, **({"namespace": dep_ns} if dep_ns else {})})
    if values:
        merged: Obj = {}
        for document in values:
            merged = merge_maps(merged, document)
        spec["values"] = merged
    if values_from:
        refs = []
        for text in values_from:
            kind_word, _, ref_name = text.partition("/")
            if kind_word.lower() not in VALUES_FROM_KINDS or not ref_name:
                raise ValueError(
                    f"invalid --values-from {text!r}: expected Secret/<name> or ConfigMap/<name>"
                )
            refs.append({"kind": VALUES_FROM_KINDS[kind_word.lower()], "name": ref_name})
        spec["valuesFrom"] = refs
    if service_account:
        spec["serviceAccountName"] = service_account
    if kubeconfig_secret_ref:
        spec["kubeConfig"] = {"secretRef": {"name": kubeconfig_secret_ref}}
    return _sorted_keys(_object(HELM_RELEASE, name, namespace, spec, labels))  # type: ignore[no-any-return]


def git_secret(
    name: str,
    namespace: str,
    url: str,
    username: str | None = None,
    password: str | None = None,
    bearer_token: str | None = None,
    private_key: str | None = None,
    known_hosts: str | None = None,
    ca: str | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    data: dict[str, str] = {}
    if url.startswith("ssh://"):
        if not private_key:
            raise ValueError("an ssh:// URL needs --private-key-file (the deploy key)")
        data["identity"] = private_key
        if known_hosts:
            data["known_hosts"] = known_hosts
    else:
        if bearer_token:
            data["bearerToken"] = bearer_token
        elif username is not None and password is not None:
            data["username"] = username
            data["password"] = password
        elif not ca:
            raise ValueError("an http(s) URL needs --username and --password, or --bearer-token")
    if ca:
        data["ca.crt"] = ca
    meta: Obj = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": data}


def _object(kind: Kind, name: str, namespace: str, spec: Obj, labels: dict[str, str] | None) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta, "spec": spec}


def receiver(
    name: str,
    namespace: str,
    type_: str,
    resources: list[str],
    secret_ref: str,
    events: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    """A notification.toolkit.fluxcd.io/v1 Receiver; resources are `<Kind>/<name>[.<namespace>]`."""
    refs = []
    for text in resources:
        if "/" not in text:
            raise ValueError(
                f"invalid --resource {text!r}: expected <Kind>/<name>, e.g. GitRepository/flux-system"
            )
        kind_word, rest = text.split("/", 1)
        kind = kind_by_word(kind_word).kind
        ref_name, _, ref_ns = rest.partition(".")
        ref: Obj = {"apiVersion": kind_by_word(kind_word).api_version, "kind": kind, "name": ref_name}
        if ref_ns and ref_ns != namespace:
            ref["namespace"] = ref_ns
        refs.append(ref)
    if not refs:
        raise ValueError("at least one --resource is required")
    spec: Obj = {"type": type_}
    if events:
        spec["events"] = list(events)
    spec["resources"] = refs
    spec["secretRef"] = {"name": secret_ref}
    return _object(RECEIVER, name, namespace, spec, labels)


_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def exported(obj: Obj) -> Obj:
    """What `export` prints: the object as one would write it, without status or server fields."""
    obj = copy.deepcopy(obj)
    meta = obj.get("metadata") or {}
    clean: Obj = {"name": meta.get("name")}
    if meta.get("namespace"):
        clean["namespace"] = meta["namespace"]
    labels = meta.get("labels") or {}
    if labels:
        clean["labels"] = labels
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k not in _DROPPED_ANNOTATIONS and not k.startswith("reconcile.fluxcd.io/")
    }
    if annotations:
        clean["annotations"] = annotations
    out: Obj = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": clean}
    for key, value in obj.items():
        if key not in ("apiVersion", "kind", "metadata", "status"):
            out[key] = value
    return out


def parse_labels(items: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items or []:
        for part in item.split(","):
            if "=" not in part:
                raise ValueError(f"invalid label {part!r}: expected key=value")
            key, value = part.split("=", 1)
            labels[key.strip()] = value.strip()
    return labels


def to_yaml(objs: list[Obj]) -> str:
    """Flux's export format: every document starts with `---`."""
    return "".join("---\n" + yaml.safe_dump(o, sort_keys=False, default_flow_style=False) for o in objs)
