"""`tide events`: Kubernetes Events of Flux objects, oldest first, like `flux events`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tide.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from tide.cli.kinds import ALL, parse_ref
from tide.cli.output import render_table, wants_colour
from tide.cli.session import Session

FLUX_KINDS = {k.kind for k in ALL}


def _timestamp(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def age(timestamp: str, now: dt.datetime | None = None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds())
    if seconds < 0:
        seconds = 0
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s" if seconds < 600 else f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m"
    return f"{seconds // 86400}d"


def rows(
    events: list[dict[str, Any]],
    for_kind: str | None,
    for_name: str | None,
    all_namespaces: bool,
    now: dt.datetime | None = None,
) -> list[list[str]]:
    selected = []
    for ev in events:
        involved = ev.get("involvedObject") or {}
        if involved.get("kind") not in FLUX_KINDS:
            continue
        if for_kind and (involved.get("kind") != for_kind or involved.get("name") != for_name):
            continue
        selected.append(ev)
    selected.sort(key=_timestamp)
    out = []
    for ev in selected:
        involved = ev.get("involvedObject") or {}
        row = [
            age(_timestamp(ev), now),
            str(ev.get("type", "")),
            str(ev.get("reason", "")),
            f"{involved.get('kind')}/{involved.get('name')}",
            str(ev.get("message", "")).strip(),
        ]
        if all_namespaces:
            row.insert(0, str(involved.get("namespace", "")))
        out.append(row)
    return out


async def run(session: Session) -> int:
    args = session.args
    for_kind = for_name = None
    if args.for_:
        try:
            kind, for_name = parse_ref(args.for_)
        except KeyError:
            raise CliError(
                f"invalid --for {args.for_!r}", "use <Kind>/<name>, e.g. --for Kustomization/apps", EXIT_USAGE
            ) from None
        for_kind = kind.kind
    kube = await session.kube()
    namespace = None if args.all_namespaces else session.namespace
    headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    if args.all_namespaces:
        headers.insert(0, "NAMESPACE")
    if args.watch:  # until Ctrl-C; resumed when the server ends the watch, nothing printed twice
        session.write("   ".join(headers))
        seen: set[tuple[str, str]] = set()
        while True:
            async for event_type, ev in kube.watch("v1", "Event", namespace, timeout_seconds=300):
                meta = ev.get("metadata") or {}
                key = (str(meta.get("uid")), str(ev.get("count")))
                if event_type == "DELETED" or key in seen:
                    continue
                seen.add(key)
                for row in rows([ev], for_kind, for_name, args.all_namespaces):
                    session.write("   ".join(row))
    events = await kube.list("v1", "Event", namespace)
    table_rows = rows(events, for_kind, for_name, args.all_namespaces)
    if not table_rows:
        session.printer.failure("no events found")
        return EXIT_OK
    session.write(render_table(headers, table_rows, wants_colour(session.out)))
    return EXIT_OK
