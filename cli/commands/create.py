"""`tide create source git | oci | helm | chart`, `kustomization`, `helmrelease`, `secret git`: create or
update (server-side apply), wait Ready, or print the YAML with --export."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tide.cli import objects
from tide.cli.commands.reconcile import wait_ready
from tide.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from tide.cli.kinds import (
    GIT_REPOSITORY,
    HELM_CHART,
    HELM_RELEASE,
    HELM_REPOSITORY,
    KUSTOMIZATION,
    OCI_REPOSITORY,
    RECEIVER,
    Kind,
)
from tide.cli.session import FIELD_MANAGER, Session


def _read(path: str | None, what: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text()
    except OSError as exc:
        raise CliError(
            f"cannot read {what} {path}: {exc.strerror}", f"check the path given for {what}", EXIT_USAGE
        ) from None


def build_git_repository(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    return objects.git_repository(
        args.name,
        namespace,
        args.url,
        interval=args.interval,
        branch=args.branch,
        tag=args.tag,
        semver=args.tag_semver,
        commit=args.commit,
        ref_name=args.ref_name,
        secret_ref=args.secret_ref,
        ignore_paths=args.ignore_paths,
        recurse_submodules=args.recurse_submodules,
        labels=objects.parse_labels(args.label),
    )


def build_oci_repository(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    return objects.oci_repository(
        args.name,
        namespace,
        args.url,
        interval=args.interval,
        tag=args.tag,
        semver=args.tag_semver,
        digest=args.digest,
        secret_ref=args.secret_ref,
        ignore_paths=args.ignore_paths,
        insecure=args.insecure,
        labels=objects.parse_labels(args.label),
    )


def build_helm_repository(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    return objects.helm_repository(
        args.name,
        namespace,
        args.url,
        interval=args.interval,
        secret_ref=args.secret_ref,
        pass_credentials=args.pass_credentials,
        labels=objects.parse_labels(args.label),
    )


def build_helm_chart(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    return objects.helm_chart(
        args.name,
        namespace,
        args.source,
        args.chart,
        interval=args.interval,
        version=args.chart_version,
        reconcile_strategy=args.reconcile_strategy,
        values_files=args.values_files,
        labels=objects.parse_labels(args.label),
    )


def build_kustomization(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    return objects.kustomization(
        args.name,
        namespace,
        args.source,
        path=args.path,
        prune=args.prune,
        interval=args.interval,
        target_namespace=args.target_namespace,
        depends_on=args.depends_on,
        wait=args.wait,
        health_checks=args.health_check,
        service_account=args.service_account,
        retry_interval=args.retry_interval,
        health_check_timeout=args.health_check_timeout,
        decryption_provider=args.decryption_provider,
        decryption_secret=args.decryption_secret,
        labels=objects.parse_labels(args.label),
    )


def _split(items: list[str] | None) -> list[str]:
    """Flux's string-slice flags: repeatable, and each may hold comma-separated values."""
    return [part.strip() for item in items or [] for part in item.split(",") if part.strip()]


def _values_file(path: str) -> dict[str, Any]:
    text = _read(path, "--values") or ""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"--values {path} is not valid YAML: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"--values {path} must hold a YAML map of values, not a {type(values).__name__}")
    return values


def build_helm_release(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    return objects.helm_release(
        args.name,
        namespace,
        source=args.source,
        chart=args.chart,
        chart_ref=args.chart_ref,
        chart_version=args.chart_version,
        chart_interval=args.chart_interval,
        reconcile_strategy=args.reconcile_strategy,
        interval=args.interval,
        release_name=args.release_name,
        target_namespace=args.target_namespace,
        storage_namespace=args.storage_namespace,
        create_target_namespace=args.create_target_namespace,
        depends_on=_split(args.depends_on),
        values=[_values_file(path) for path in _split(args.values)],
        values_from=_split(args.values_from),
        crds=args.crds,
        service_account=args.service_account,
        kubeconfig_secret_ref=args.kubeconfig_secret_ref,
        labels=objects.parse_labels(args.label),
    )


def _known_hosts(url: str) -> str | None:
    """Like Flux, trust the host key seen now (ssh-keyscan) when no known_hosts file is given."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    cmd = ["ssh-keyscan", "-p", str(parsed.port or 22), parsed.hostname or ""]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


def build_git_secret(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    known_hosts = _read(args.known_hosts_file, "--known-hosts-file")
    if args.url.startswith("ssh://") and known_hosts is None:
        known_hosts = _known_hosts(args.url)
    return objects.git_secret(
        args.name,
        namespace,
        args.url,
        username=args.username,
        password=args.password,
        bearer_token=args.bearer_token,
        private_key=_read(args.private_key_file, "--private-key-file"),
        known_hosts=known_hosts,
        ca=_read(args.ca_file, "--ca-file"),
        labels=objects.parse_labels(args.label),
    )


def build_receiver(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    return objects.receiver(
        args.name,
        namespace,
        args.type,
        args.resource or [],
        args.secret_ref,
        events=args.event,
        labels=objects.parse_labels(args.label),
    )


async def run(session: Session, what: str) -> int:
    args = session.args
    builders = {
        "source git": (build_git_repository, GIT_REPOSITORY),
        "source oci": (build_oci_repository, OCI_REPOSITORY),
        "source helm": (build_helm_repository, HELM_REPOSITORY),
        "source chart": (build_helm_chart, HELM_CHART),
        "kustomization": (build_kustomization, KUSTOMIZATION),
        "helmrelease": (build_helm_release, HELM_RELEASE),
        "secret git": (build_git_secret, None),
        "receiver": (build_receiver, RECEIVER),
    }
    builder, kind = builders[what]
    try:
        obj = builder(args, session.namespace)
    except ValueError as exc:
        raise CliError(str(exc), f"see `tide create {what} --help`", EXIT_USAGE) from None
    if args.export:
        session.write(objects.to_yaml([obj]).rstrip("\n"))
        return EXIT_OK
    return await apply_and_wait(session, obj, kind, wait=not args.no_wait)


async def apply_and_wait(session: Session, obj: dict[str, Any], kind: Kind | None, wait: bool = True) -> int:
    kube = await session.kube()
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    label = obj["kind"]
    session.printer.action(f"applying {label} {name} in {namespace} namespace")
    await kube.apply(obj, FIELD_MANAGER)
    session.printer.success(f"{label} {name} created or updated")
    if kind is None or not wait:
        return EXIT_OK
    # A changed spec bumps the generation; waiting for observedGeneration == generation is the handshake.
    message = await wait_ready(session, kind, name, namespace, None)
    session.printer.success(f"{label} {name} is ready: {message}")
    if kind is RECEIVER:
        live = await kube.get(kind.api_version, kind.kind, name, namespace) or {}
        path = (live.get("status") or {}).get("webhookPath")
        if path:
            session.printer.success(f"generated webhook URL {path}")
    return EXIT_OK
