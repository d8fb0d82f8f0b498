"""`tide install` / `tide uninstall`: apply or remove the chart's manifests (CRDs and controllers)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from tide.cli import manifests
from tide.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from tide.cli.kinds import ALL
from tide.cli.objects import to_yaml
from tide.cli.session import FIELD_MANAGER, Session

Obj = dict[str, Any]


def render_options(session: Session) -> manifests.RenderOptions:
    args = session.args
    return manifests.RenderOptions(
        namespace=session.namespace,
        components=tuple(
            c.strip()
            for c in getattr(args, "components", ",".join(manifests.DEFAULT_COMPONENTS)).split(",")
            if c.strip()
        ),
        crds_only=getattr(args, "crds_only", False),
        image_repository=getattr(args, "image_repository", None),
        image_tag=getattr(args, "image_tag", None),
        values_files=getattr(args, "values", []) or [],
        sets=getattr(args, "set", []) or [],
        chart=getattr(args, "chart", None),
    )


async def apply_manifests(session: Session, docs: list[Obj], wait: bool = True) -> None:
    kube = await session.kube()
    printer = session.printer
    crds = [d for d in docs if d["kind"] in ("Namespace", "CustomResourceDefinition")]
    rest = [d for d in docs if d not in crds]
    printer.action(f"applying {len(crds)} namespace and CRD manifests")
    for d in crds:
        await kube.apply(d, FIELD_MANAGER)
    names = manifests.crd_names(crds)
    await wait_crds_established(session, names)
    if names:
        printer.success(f"{len(names)} CRDs established")
    if rest:
        printer.action(f"applying {len(rest)} controller manifests")
        for d in rest:
            await kube.apply(d, FIELD_MANAGER)
        printer.success("controllers' manifests applied")
    deployments = [d["metadata"]["name"] for d in rest if d["kind"] == "Deployment"]
    if wait and deployments:
        await wait_deployments(session, deployments)


async def wait_crds_established(session: Session, names: list[str]) -> None:
    kube = await session.kube()

    async def check() -> tuple[bool, str]:
        for name in names:
            crd = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            conds = {
                c["type"]: c["status"] for c in ((crd or {}).get("status") or {}).get("conditions") or []
            }
            if conds.get("Established") != "True":
                return False, f"{name} not established yet"
        return True, ""

    if names:
        await session.wait_for("waiting for the CRDs to be established", check)


def deployment_ready(d: Obj | None) -> tuple[bool, str]:
    if d is None:
        return False, "not found"
    spec, st = d.get("spec") or {}, d.get("status") or {}
    want = spec.get("replicas", 1)
    if st.get("observedGeneration", 0) < d["metadata"].get("generation", 0):
        return False, "rollout not observed yet"
    for key in ("updatedReplicas", "readyReplicas", "availableReplicas"):
        if st.get(key, 0) < want:
            return False, f"{st.get('readyReplicas', 0)}/{want} replicas ready"
    return True, f"{want}/{want} replicas ready"


async def wait_deployments(session: Session, names: list[str]) -> None:
    kube = await session.kube()
    printer = session.printer

    async def check() -> tuple[bool, str]:
        for name in names:
            ok, detail = deployment_ready(await kube.get("apps/v1", "Deployment", name, session.namespace))
            if not ok:
                return False, f"{name}: {detail}"
        return True, ""

    await session.wait_for(
        "waiting for the controllers to be ready",
        check,
        hint=f"see `kubectl -n {session.namespace} get pods` and the controllers' logs",
    )
    for name in names:
        printer.success(f"{name}: deployment ready")


async def install(session: Session) -> int:
    args = session.args
    opts = render_options(session)
    docs = await manifests.render(opts)
    if args.export:
        session.write((manifests.header(opts) + to_yaml(docs)).rstrip("\n"))
        return EXIT_OK
    session.printer.action(f"installing Tide in {session.namespace} namespace")
    await apply_manifests(session, docs, wait=not args.no_wait and not opts.crds_only)
    if opts.crds_only:
        session.printer.success(
            "CRDs installed; start the controllers outside the cluster (tide-<name>-controller)"
        )
    else:
        session.printer.success("install finished")
    return EXIT_OK


async def uninstall(session: Session) -> int:
    args = session.args
    kube = await session.kube()
    printer = session.printer
    ns = session.namespace
    if not args.silent and not args.dry_run:
        if not sys.stdin.isatty():
            raise CliError(
                "uninstall asks for confirmation", "pass --silent to skip it in scripts", EXIT_USAGE
            )
        answer = await asyncio.to_thread(
            input, f"Are you sure you want to delete Tide and its CRDs from the cluster ({ns})? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            printer.failure("aborted")
            return EXIT_USAGE
    dry = " (dry run)" if args.dry_run else ""
    # 1. controllers and their identities (everything labelled by the chart in the namespace)
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ):
        for obj in await kube.list(api_version, kind, ns, label_selector="app.kubernetes.io/part-of=flux"):
            if not args.dry_run:
                await kube.delete(api_version, kind, obj["metadata"]["name"], ns)
            printer.success(f"{kind}/{ns}/{obj['metadata']['name']} deleted{dry}")
    for kind in ("ClusterRoleBinding", "ClusterRole"):
        for obj in await kube.list(
            "rbac.authorization.k8s.io/v1",
            kind,
            label_selector=f"app.kubernetes.io/part-of=flux,app.kubernetes.io/instance={ns}",
        ):
            if not args.dry_run:
                await kube.delete("rbac.authorization.k8s.io/v1", kind, obj["metadata"]["name"])
            printer.success(f"{kind}/{obj['metadata']['name']} deleted{dry}")
    # 2. finalizers off every Flux object, so deleting the CRDs does not hang (workloads they applied stay)
    for k in ALL:
        if not await kube.has_resource(k.api_version, k.kind):
            continue
        for obj in await kube.list(k.api_version, k.kind):
            meta = obj["metadata"]
            if not meta.get("finalizers"):
                continue
            if not args.dry_run:
                await kube.patch_merge(
                    k.api_version, k.kind, meta["name"], meta["namespace"], {"metadata": {"finalizers": None}}
                )
            printer.success(f"{k.kind}/{meta['namespace']}/{meta['name']} finalizers removed{dry}")
    # 3. CRDs of the toolkit groups
    for crd in await kube.list("apiextensions.k8s.io/v1", "CustomResourceDefinition"):
        name = crd["metadata"]["name"]
        if name.endswith(".toolkit.fluxcd.io"):
            if not args.dry_run:
                await kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            printer.success(f"CustomResourceDefinition/{name} deleted{dry}")
    if not args.keep_namespace:
        if not args.dry_run:
            await kube.delete("v1", "Namespace", ns)
        printer.success(f"Namespace/{ns} deleted{dry}")
    printer.success(f"uninstall finished{dry}")
    return EXIT_OK
