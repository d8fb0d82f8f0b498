"""`tide reconcile`, `tide suspend`, `tide resume`: annotate or patch, then follow the controller."""

from __future__ import annotations

from typing import Any

from tide.cli import status
from tide.cli.errors import EXIT_OK, EXIT_USAGE, CliError, NotReadyError, WaitTimeoutError
from tide.cli.kinds import BY_KIND, HELM_CHART, HELM_RELEASE, KUSTOMIZATION, Kind
from tide.cli.session import Session, now_rfc3339nano

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
CONTROLLER_OF = {
    "source.toolkit.fluxcd.io": "source-controller",
    "kustomize.toolkit.fluxcd.io": "kustomize-controller",
    "helm.toolkit.fluxcd.io": "helm-controller",
    "notification.toolkit.fluxcd.io": "notification-controller",
}


def _describe(kind: Kind, name: str, namespace: str) -> str:
    return f"{kind.kind} {name} in {namespace} namespace"


async def _get(session: Session, kind: Kind, name: str, namespace: str) -> dict[str, Any]:
    obj = await (await session.kube()).get(kind.api_version, kind.kind, name, namespace)
    if obj is None:
        raise CliError(
            f"{kind.kind} {name} not found in {namespace} namespace",
            "check the name and -n/--namespace (`tide get all -A` lists everything)",
            EXIT_USAGE,
        )
    return obj


async def wait_ready(
    session: Session, kind: Kind, name: str, namespace: str, requested_at: str | None
) -> str:
    """Follow the object until Ready=True (returns its message) or fail with the controller's message."""
    failure: list[str] = []
    unhandled = [False]

    async def check() -> tuple[bool, str]:
        obj = await _get(session, kind, name, namespace)
        progress = status.reconcile_progress(obj, requested_at)
        unhandled[0] = progress.unhandled
        if progress.failed:
            failure.append(progress.message)
            return True, progress.message
        return progress.done, progress.message

    try:
        message = await session.wait_for(
            f"waiting for {kind.kind} reconciliation",
            check,
            hint=f"see what the controller reported: `tide events --for {kind.kind}/{name} -n {namespace}`",
        )
    except WaitTimeoutError as exc:
        if unhandled[0]:
            exc.hint = (
                f"no controller handled it: is the {CONTROLLER_OF.get(kind.group, 'controller')} running? "
                "(`tide check`, or its logs when it runs outside the cluster)"
            )
        raise
    if failure:
        raise NotReadyError(
            f"{kind.kind} {name} reconciliation failed: {failure[0]}",
            f"fix the cause, then `tide reconcile {_cli_words(kind)} {name} -n {namespace}`; "
            f"history: `tide events --for {kind.kind}/{name} -n {namespace}`",
        )
    return str(message)


def _cli_words(kind: Kind) -> str:
    if kind.source:
        return f"source {kind.words[0]}"
    return kind.lower


def _success_message(kind: Kind, obj: dict[str, Any]) -> str:
    rev = status.revision(obj)
    if kind.source:
        return f"fetched revision {rev}"
    if kind is KUSTOMIZATION:
        return f"applied revision {rev}"
    return status.ready(obj)[2] or "reconciliation completed"


def source_of(kind: Kind, obj: dict[str, Any]) -> tuple[Kind, str, str, bool] | None:
    """What `--with-source` reconciles first, as Flux's CLI: (kind, name, namespace, and whether that one
    is reconciled with its own source too). A HelmRelease's chart template is its HelmChart
    `<namespace>-<name>` in the source's namespace, reconciled with its HelmRepository; a `chartRef` to a
    HelmChart goes with that chart's source as well."""
    spec = obj.get("spec") or {}
    namespace = obj["metadata"]["namespace"]
    if kind is HELM_RELEASE and not spec.get("chartRef"):
        source_ref = ((spec.get("chart") or {}).get("spec") or {}).get("sourceRef") or {}
        chart_name = f"{namespace}-{obj['metadata']['name']}"
        return HELM_CHART, chart_name, source_ref.get("namespace") or namespace, True
    ref = spec.get("sourceRef") or spec.get("chartRef") or {}
    source_kind = BY_KIND.get(ref.get("kind", ""))
    if source_kind is None or not ref.get("name"):
        return None
    return source_kind, ref["name"], ref.get("namespace") or namespace, source_kind is HELM_CHART


async def reconcile(session: Session, kind: Kind, name: str, with_source: bool = False) -> int:
    namespace = session.namespace
    obj = await _get(session, kind, name, namespace)
    if status.suspended(obj):
        raise CliError(
            f"{kind.kind} {name} is suspended",
            f"resume it first: `tide resume {_cli_words(kind)} {name} -n {namespace}`",
            EXIT_USAGE,
        )
    if with_source:
        await _reconcile_source(session, kind, obj)
    await _request_and_wait(session, kind, name, namespace)
    return EXIT_OK


async def _reconcile_source(session: Session, kind: Kind, obj: dict[str, Any]) -> None:
    source = source_of(kind, obj)
    if source is None:
        return
    source_kind, name, namespace, and_its_source = source
    if and_its_source:
        await _reconcile_source(session, source_kind, await _get(session, source_kind, name, namespace))
    await _request_and_wait(session, source_kind, name, namespace)


async def _request_and_wait(session: Session, kind: Kind, name: str, namespace: str) -> None:
    printer = session.printer
    kube = await session.kube()
    printer.action(f"annotating {_describe(kind, name, namespace)}")
    token = now_rfc3339nano()
    await kube.patch_merge(
        kind.api_version, kind.kind, name, namespace, {"metadata": {"annotations": {REQUESTED_AT: token}}}
    )
    printer.success(f"{kind.kind} annotated")
    await wait_ready(session, kind, name, namespace, token)
    printer.success(_success_message(kind, await _get(session, kind, name, namespace)))


async def _targets(session: Session, kind: Kind, name: str | None, all_: bool) -> list[str]:
    if all_:
        items = await (await session.kube()).list(kind.api_version, kind.kind, session.namespace)
        return sorted(o["metadata"]["name"] for o in items)
    if not name:
        raise CliError(f"name of the {kind.kind} is required", "pass a name or --all", EXIT_USAGE)
    return [name]


async def suspend(session: Session, kind: Kind, name: str | None, all_: bool = False) -> int:
    kube = await session.kube()
    for target in await _targets(session, kind, name, all_):
        session.printer.action(f"suspending {_describe(kind, target, session.namespace)}")
        await kube.patch_merge(
            kind.api_version, kind.kind, target, session.namespace, {"spec": {"suspend": True}}
        )
        session.printer.success(f"{kind.kind} {target} suspended")
    return EXIT_OK


async def resume(
    session: Session, kind: Kind, name: str | None, all_: bool = False, wait: bool = True
) -> int:
    kube = await session.kube()
    targets = await _targets(session, kind, name, all_)
    tokens = {}
    for target in targets:
        session.printer.action(f"resuming {_describe(kind, target, session.namespace)}")
        token = now_rfc3339nano()
        await kube.patch_merge(
            kind.api_version,
            kind.kind,
            target,
            session.namespace,
            {"metadata": {"annotations": {REQUESTED_AT: token}}, "spec": {"suspend": False}},
        )
        tokens[target] = token
        session.printer.success(f"{kind.kind} {target} resumed")
    if wait and kind.reconcilable:
        for target in targets:
            await wait_ready(session, kind, target, session.namespace, tokens[target])
            obj = await _get(session, kind, target, session.namespace)
            session.printer.success(
                f"{kind.kind} {target} reconciliation completed: {_success_message(kind, obj)}"
            )
    return EXIT_OK
