"""`tide export`: the objects as YAML one would commit, without status."""

from __future__ import annotations

from tide.cli import objects
from tide.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from tide.cli.kinds import Kind
from tide.cli.session import Session


async def run(session: Session, kinds: tuple[Kind, ...], name: str | None, all_: bool) -> int:
    kube = await session.kube()
    if not name and not all_:
        raise CliError(
            "name or --all is required", "e.g. `tide export source git --all > sources.yaml`", EXIT_USAGE
        )
    found = []
    for kind in kinds:
        if len(kinds) > 1 and not await kube.has_resource(kind.api_version, kind.kind):
            continue
        if name:
            obj = await kube.get(kind.api_version, kind.kind, name, session.namespace)
            if obj is None:
                raise CliError(
                    f"{kind.kind} {name} not found in {session.namespace} namespace",
                    "check the name and -n/--namespace",
                    EXIT_USAGE,
                )
            found.append(obj)
        else:
            items = await kube.list(kind.api_version, kind.kind, session.namespace)
            found.extend(sorted(items, key=lambda o: o["metadata"]["name"]))
    if found:
        session.write(objects.to_yaml([objects.exported(o) for o in found]).rstrip("\n"))
    return EXIT_OK
