"""`tide get`: Flux's status tables (NAME REVISION SUSPENDED READY MESSAGE), -A, --status-selector, -w."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tide.cli import status
from tide.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from tide.cli.kinds import Kind
from tide.cli.output import paint, render_table, status_colour, wants_colour
from tide.cli.session import Session

Obj = dict[str, Any]


async def fetch(session: Session, kind: Kind, name: str | None, all_namespaces: bool) -> list[Obj]:
    kube = await session.kube()
    if name:
        obj = await kube.get(kind.api_version, kind.kind, name, session.namespace)
        if obj is None:
            raise CliError(
                f"{kind.kind} {name} not found in namespace {session.namespace}",
                f"list them with `tide get {kind.words[-1] if kind.source else kind.words[1]} -A`",
                EXIT_USAGE,
            )
        return [obj]
    items = await kube.list(kind.api_version, kind.kind, None if all_namespaces else session.namespace)
    return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))


def table(
    kinds_objs: list[tuple[Kind, list[Obj]]], all_namespaces: bool, prefix_kind: bool, colour: bool
) -> str:
    sections = []
    for kind, objs in kinds_objs:
        if not objs:
            continue
        prefix = f"{kind.lower}/" if prefix_kind else ""
        rows = [status.row(o, prefix, all_namespaces) for o in objs]
        sections.append(render_table(status.headers(all_namespaces), rows, colour))
    return "\n\n".join(sections)


async def run(session: Session, kinds: tuple[Kind, ...], name: str | None = None) -> int:
    args = session.args
    all_namespaces = bool(getattr(args, "all_namespaces", False))
    selector = getattr(args, "status_selector", "") or ""
    if getattr(args, "watch", False):
        if len(kinds) != 1:
            raise CliError(
                "--watch works on one kind at a time", "e.g. `tide get kustomizations -w`", EXIT_USAGE
            )
        return await watch(session, kinds[0], name, all_namespaces, selector)
    kube = await session.kube()
    results: list[tuple[Kind, list[Obj]]] = []
    for kind in kinds:
        if len(kinds) > 1 and not await kube.has_resource(kind.api_version, kind.kind):
            continue  # `get all` skips kinds whose CRDs are not installed (e.g. no helm controller)
        try:
            objs = [
                o
                for o in await fetch(session, kind, name, all_namespaces)
                if status.matches_status_selector(o, selector)
            ]
        except ValueError as exc:
            raise CliError(str(exc), "e.g. --status-selector ready=false", EXIT_USAGE) from None
        results.append((kind, objs))
    output = getattr(args, "output", "table")
    if output in ("json", "yaml"):
        items = [o for _, objs in results for o in objs]
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        session.write(json.dumps(doc, indent=2) if output == "json" else yaml.safe_dump(doc, sort_keys=False))
        return EXIT_OK
    text = table(results, all_namespaces, len(kinds) > 1, wants_colour(session.out))
    if not text:
        where = "any namespace" if all_namespaces else f"{session.namespace} namespace"
        what = kinds[0].kind if len(kinds) == 1 else ("source" if all(k.source for k in kinds) else "Flux")
        session.printer.failure(f"no {what} objects found in {where}")
        return EXIT_OK
    session.write(text)
    return EXIT_OK


async def watch(session: Session, kind: Kind, name: str | None, all_namespaces: bool, selector: str) -> int:
    """Print the header once, then a row each time an object changes, until Ctrl-C (like `flux get -w`).

    The API server ends a watch after a while; it is resumed, and rows already printed are not repeated.
    """
    kube = await session.kube()
    colour = wants_colour(session.out)
    widths = [12, 20, 48, 9, 7, 0] if all_namespaces else [20, 48, 9, 7, 0]
    headers = status.headers(all_namespaces)
    ready_col = headers.index("READY")

    def line(cells: list[str], header: bool = False) -> str:
        padded = [c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        if not header:
            padded[ready_col] = paint(padded[ready_col], status_colour(cells[ready_col]), colour)
        return "   ".join(padded).rstrip()

    session.write(line(headers, header=True))
    last: dict[tuple[str, str], list[str]] = {}
    while True:
        async for event_type, obj in kube.watch(
            kind.api_version,
            kind.kind,
            None if all_namespaces else session.namespace,
            name=name,
            timeout_seconds=300,
        ):
            if event_type == "DELETED" or not status.matches_status_selector(obj, selector):
                continue
            meta = obj["metadata"]
            row = status.row(obj, "", all_namespaces)
            key = (meta.get("namespace", ""), meta["name"])
            if last.get(key) == row:
                continue
            last[key] = row
            session.write(line(row))
