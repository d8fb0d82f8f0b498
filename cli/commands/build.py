"""`tide build kustomization NAME --path DIR`: the objects the controller would apply, as YAML."""

from __future__ import annotations

from tide.cli.errors import EXIT_OK
from tide.cli.localbuild import build_local, load_kustomization
from tide.cli.objects import to_yaml
from tide.cli.session import Session


async def run(session: Session) -> int:
    args = session.args
    kube = None if args.dry_run else await session.kube()
    ks = await load_kustomization(kube, args.name, session.namespace, args.kustomization_file)
    objects = await build_local(
        kube, ks, args.path, strict=args.strict_substitute, build_seconds=session.timeout
    )
    session.write(to_yaml(objects).rstrip("\n"))
    return EXIT_OK
