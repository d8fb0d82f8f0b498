"""`tide check`: the API server version, Tide's CRDs, and its controllers' readiness."""

from __future__ import annotations

import re

from tide.cli import manifests
from tide.cli.commands.install import deployment_ready
from tide.cli.errors import EXIT_FAILED, EXIT_OK
from tide.cli.session import Session

MIN_KUBERNETES = (1, 33, 0)


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


async def run(session: Session) -> int:
    args = session.args
    printer = session.printer
    kube = await session.kube()
    ok = True
    printer.action("checking prerequisites")
    info = await kube.server_version()
    git_version = str(info.get("gitVersion", ""))
    version = parse_version(git_version)
    minimum = ".".join(map(str, MIN_KUBERNETES))
    if version is None:
        printer.failure(f"cannot parse the Kubernetes version {git_version!r}")
        ok = False
    elif version < MIN_KUBERNETES:
        printer.failure(f"Kubernetes {git_version} <{minimum} (Tide needs >={minimum})")
        printer.hint("upgrade the cluster's control plane")
        ok = False
    else:
        printer.success(f"Kubernetes {git_version} >={minimum}")
    if args.pre:
        return _finish(session, ok, "prerequisites checks passed")

    if not args.crds_only:
        printer.action("checking controllers")
        components = [c.strip() for c in args.components.split(",") if c.strip()]
        for name in components:
            d = await kube.get("apps/v1", "Deployment", name, session.namespace)
            ready, detail = deployment_ready(d)
            if ready and d is not None:
                images = ", ".join(
                    c.get("image", "") for c in d["spec"]["template"]["spec"].get("containers", [])
                )
                printer.success(f"{name}: deployment ready")
                printer.action(f"{images}")
            else:
                printer.failure(f"{name}: {detail}")
                printer.hint(
                    f"`kubectl -n {session.namespace} describe deployment {name}`; "
                    "install with `tide install` if it is missing"
                )
                ok = False

    printer.action("checking crds")
    for name in manifests.chart_crd_names():
        crd = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        if crd is None:
            printer.failure(f"{name} not found")
            printer.hint("install the CRDs: `tide install` (or `tide install --crds-only`)")
            ok = False
            continue
        conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        stored = ",".join((crd.get("status") or {}).get("storedVersions") or [])
        if conds.get("Established") != "True":
            printer.failure(f"{name} is not established")
            ok = False
        else:
            printer.success(f"{name.split('.', 1)[0]}.{name.split('.', 1)[1]}/{stored}")
    return _finish(session, ok, "all checks passed")


def _finish(session: Session, ok: bool, message: str) -> int:
    if ok:
        session.printer.success(message)
        return EXIT_OK
    session.printer.failure("check failed")
    return EXIT_FAILED
