"""`tide`: the command line for Tide, with Flux's verbs and flags.

Exit codes: 0 success; 1 the operation ran but the result is not good (not Ready, check failed, diff found);
2 usage or user error (bad flags, unknown or suspended object); 3 the cluster could not be reached or refused
the request; 4 timed out waiting; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

import aiohttp

from tide.cli import kinds as k
from tide.cli.errors import EXIT_API, EXIT_USAGE, CliError
from tide.cli.manifests import DEFAULT_COMPONENTS

if TYPE_CHECKING:
    from tide.cli.session import Session

Handler = Callable[["Session"], Awaitable[int]]
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EPILOG = """exit codes: 0 ok, 1 not ready / check failed / diff found, 2 usage or user error,
3 cluster unreachable or request refused, 4 timed out, 130 interrupted.
Colour only on a terminal (NO_COLOR=1 turns it off)."""


def _globals(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The same global flags on the root and on every subcommand (so they work before or after the verb)."""

    def d(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("global flags")
    g.add_argument(
        "--kubeconfig", default=d(None), help="path to the kubeconfig (default $KUBECONFIG or ~/.kube/config)"
    )
    g.add_argument("--context", default=d(None), help="kubeconfig context to use")
    g.add_argument(
        "-n",
        "--namespace",
        default=d(os.environ.get("FLUX_SYSTEM_NAMESPACE", "flux-system")),
        help="the namespace scope for this operation (default flux-system)",
    )
    g.add_argument(
        "--timeout", default=d("5m"), help="how long to wait for operations (Go duration, default 5m)"
    )


def _leaf(
    sub: SubParsers, name: str, help_: str, handler: Handler, aliases: tuple[str, ...] = ()
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_, aliases=list(aliases))
    _globals(p, suppress=True)
    p.set_defaults(handler=handler)
    return p


def _group(
    sub: SubParsers, name: str, help_: str, aliases: tuple[str, ...] = ()
) -> SubParsers:
    p = sub.add_parser(name, help=help_, description=help_, aliases=list(aliases))
    _globals(p, suppress=True)
    s: SubParsers = p.add_subparsers(dest=f"{name}_what", metavar="<kind>", required=True)
    return s


# ---- handlers (imports are lazy so `tide version --client` and --help stay fast) ----


def _get(kinds: tuple[k.Kind, ...]) -> Handler:
    async def handler(session: Session) -> int:
        from tide.cli.commands import get

        return await get.run(session, kinds, getattr(session.args, "name", None))

    return handler


def _reconcile(kind: k.Kind) -> Handler:
    async def handler(session: Session) -> int:
        from tide.cli.commands import reconcile

        return await reconcile.reconcile(
            session, kind, session.args.name, getattr(session.args, "with_source", False)
        )

    return handler


def _suspend(kind: k.Kind) -> Handler:
    async def handler(session: Session) -> int:
        from tide.cli.commands import reconcile

        return await reconcile.suspend(session, kind, session.args.name, session.args.all)

    return handler


def _resume(kind: k.Kind) -> Handler:
    async def handler(session: Session) -> int:
        from tide.cli.commands import reconcile

        return await reconcile.resume(
            session, kind, session.args.name, session.args.all, wait=session.args.wait
        )

    return handler


def _export(kinds: tuple[k.Kind, ...]) -> Handler:
    async def handler(session: Session) -> int:
        from tide.cli.commands import export

        return await export.run(session, kinds, getattr(session.args, "name", None), session.args.all)

    return handler


def _create(what: str) -> Handler:
    async def handler(session: Session) -> int:
        from tide.cli.commands import create

        return await create.run(session, what)

    return handler


def _command(module: str, function: str = "run") -> Handler:
    """The handler `tide.cli.commands.<module>.<function>(session)`, imported when it runs."""

    async def handler(session: Session) -> int:
        command = importlib.import_module(f"tide.cli.commands.{module}")
        return int(await getattr(command, function)(session))

    return handler


# ---- the parser ----

SOURCE_WORDS = {
    "git": k.GIT_REPOSITORY,
    "oci": k.OCI_REPOSITORY,
    "helm": k.HELM_REPOSITORY,
    "chart": k.HELM_CHART,
    "bucket": k.BUCKET,
}
OTHER_KINDS: list[tuple[str, tuple[str, ...], k.Kind]] = [
    ("kustomization", ("kustomizations", "ks"), k.KUSTOMIZATION),
    ("helmrelease", ("helmreleases", "hr"), k.HELM_RELEASE),
    ("receiver", ("receivers",), k.RECEIVER),
]


def _add_source_kinds(
    group: SubParsers,
    verb: str,
    handler_for: Callable[[k.Kind], Handler],
    extra: Callable[[argparse.ArgumentParser], None],
) -> None:
    sources = group.add_parser("source", help=f"{verb} sources", aliases=["sources"])
    _globals(sources, suppress=True)
    s = sources.add_subparsers(dest="source_kind", metavar="<source kind>", required=True)
    for word, kind in SOURCE_WORDS.items():
        p = _leaf(s, word, f"{verb} {kind.kind} sources", handler_for(kind))
        extra(p)


def _name(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("name", nargs=None if required else "?", help="name of the object")


def build_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="tide",
        description="Tide: GitOps for Kubernetes, a drop-in for Flux v2.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _globals(root, suppress=False)
    verbs = root.add_subparsers(dest="verb", metavar="<command>", required=True)

    # version
    p = _leaf(verbs, "version", "print the client and controllers' versions", _command("version"))
    p.add_argument("--client", action="store_true", help="print only the client version")
    p.add_argument("-o", "--output", choices=["text", "yaml", "json"], default="text")

    # install / uninstall / check
    p = _leaf(
        verbs,
        "install",
        "install or upgrade Tide (CRDs and controllers) in the cluster",
        _command("install", "install"),
    )
    p.add_argument(
        "--export", action="store_true", help="print the manifests as YAML instead of applying them"
    )
    p.add_argument(
        "--crds-only",
        action="store_true",
        help="install only the namespace and CRDs (when the controllers run outside the cluster)",
    )
    p.add_argument(
        "--components",
        default=",".join(DEFAULT_COMPONENTS),
        help="controllers to install, comma-separated",
    )
    p.add_argument(
        "--image-repository",
        default=None,
        help="controllers' image repository (chart value image.repository)",
    )
    p.add_argument("--image-tag", default=None, help="controllers' image tag (chart value image.tag)")
    p.add_argument("--values", action="append", default=[], help="extra chart values file (repeatable)")
    p.add_argument("--set", action="append", default=[], help="extra chart value key=value (repeatable)")
    p.add_argument(
        "--chart", default=None, help="path to the Tide chart (default: the one shipped with Tide)"
    )
    p.add_argument("--no-wait", action="store_true", help="do not wait for the controllers to be ready")
    p = _leaf(
        verbs,
        "uninstall",
        "remove Tide's controllers, CRDs and namespace (workloads it applied stay)",
        _command("install", "uninstall"),
    )
    p.add_argument("--keep-namespace", action="store_true", help="keep the namespace")
    p.add_argument("-s", "--silent", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    p = _leaf(verbs, "check", "check the cluster, CRDs and controllers", _command("check"))
    p.add_argument("--pre", action="store_true", help="only the prerequisites (before install)")
    p.add_argument(
        "--components",
        default=",".join(DEFAULT_COMPONENTS),
        help="controllers that must be ready, comma-separated",
    )
    p.add_argument(
        "--crds-only",
        action="store_true",
        help="the controllers run outside the cluster: check only the API server and CRDs",
    )

    # bootstrap
    boot = _group(
        verbs, "bootstrap", "put Tide under GitOps: commit its manifests to a repository and sync from it"
    )
    p = _leaf(boot, "git", "bootstrap from any Git server (HTTP(S) or SSH)", _command("bootstrap"))
    p.add_argument("--url", required=True, help="Git repository URL (http(s):// or ssh://)")
    p.add_argument("--branch", default="main", help="Git branch (default main)")
    p.add_argument("--path", default="", help="path in the repository, e.g. clusters/dev")
    p.add_argument("-u", "--username", default=None, help="basic auth username")
    p.add_argument("-p", "--password", default=None, help="basic auth password")
    p.add_argument("--private-key-file", default=None, help="SSH private key (ssh:// URLs)")
    p.add_argument("--secret-name", default="flux-system", help="Secret with the Git credentials")
    p.add_argument("--interval", default="1m", help="GitRepository interval (default 1m)")
    p.add_argument("--author-name", default="Tide", help="commit author name")
    p.add_argument("--author-email", default="tide@users.noreply.local", help="commit author email")
    p.add_argument("--commit-message-appendix", default="", help="string appended to the commit message")
    p.add_argument(
        "--crds-only",
        action="store_true",
        help="write and install only the namespace and CRDs; the controllers run outside the cluster "
        "(local development, `make demo`)",
    )
    p.add_argument("--image-repository", default=None)
    p.add_argument("--image-tag", default=None)
    p.add_argument("-s", "--silent", action="store_true", help="assume yes to confirmations")

    # create
    create = _group(verbs, "create", "create or update sources, kustomizations and secrets")
    csrc = create.add_parser("source", help="create or update a source")
    _globals(csrc, suppress=True)
    csub = csrc.add_subparsers(dest="source_kind", metavar="<source kind>", required=True)
    p = _leaf(csub, "git", "create or update a GitRepository", _create("source git"))
    _name(p)
    p.add_argument("--url", required=True, help="Git URL: http(s):// or ssh://")
    p.add_argument("--branch", default=None, help="branch (default master when no other ref is given)")
    p.add_argument("--tag", default=None)
    p.add_argument("--tag-semver", default=None, help="semver range, e.g. '>=1.0.0'")
    p.add_argument("--commit", default=None)
    p.add_argument("--ref-name", default=None, help="full ref name, e.g. refs/pull/1/head")
    p.add_argument("--secret-ref", default=None, help="Secret with the Git credentials")
    p.add_argument("--ignore-paths", action="append", default=None, help="paths to ignore (gitignore syntax)")
    p.add_argument("--recurse-submodules", action="store_true")
    _create_common(p)
    p = _leaf(csub, "oci", "create or update an OCIRepository", _create("source oci"))
    _name(p)
    p.add_argument("--url", required=True, help="OCI repository URL: oci://<host>/<repository>")
    p.add_argument("--tag", default=None, help="tag (default latest when no other reference is given)")
    p.add_argument("--tag-semver", default=None, help="semver range over the tags, e.g. '>=1.0.0'")
    p.add_argument("--digest", default=None, help="manifest digest, e.g. sha256:...")
    p.add_argument("--secret-ref", default=None, help="Secret of type kubernetes.io/dockerconfigjson")
    p.add_argument("--ignore-paths", action="append", default=None, help="paths to ignore (gitignore syntax)")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP to the registry")
    _create_common(p)
    p = _leaf(csub, "helm", "create or update a HelmRepository", _create("source helm"))
    _name(p)
    p.add_argument("--url", required=True, help="Helm repository URL: http(s)://... or oci://<host>/<path>")
    p.add_argument(
        "--secret-ref", default=None, help="Secret with username/password (or a docker config for oci)"
    )
    p.add_argument("--pass-credentials", action="store_true", help="pass credentials to all domains")
    _create_common(p)
    p = _leaf(csub, "chart", "create or update a HelmChart", _create("source chart"))
    _name(p)
    p.add_argument("--source", required=True, help="<kind>/<name>: HelmRepository, GitRepository or Bucket")
    p.add_argument("--chart", required=True, help="chart name, or its path in a GitRepository")
    p.add_argument("--chart-version", default=None, help="semver range of the chart version (default *)")
    p.add_argument("--reconcile-strategy", default=None, help="ChartVersion (default) or Revision")
    p.add_argument("--values-files", action="append", default=None, help="values file to merge (repeatable)")
    _create_common(p)
    p = _leaf(
        create, "kustomization", "create or update a Kustomization", _create("kustomization"), aliases=("ks",)
    )
    _name(p)
    p.add_argument(
        "--source",
        required=True,
        help="source: [<kind>/]<name>[.<namespace>] (kind defaults to GitRepository)",
    )
    p.add_argument("--path", default="./", help="path to the directory with the manifests (default ./)")
    p.add_argument("--prune", action="store_true", help="garbage collect removed objects")
    p.add_argument("--target-namespace", default=None)
    p.add_argument(
        "--depends-on", action="append", default=None, help="<name> or <namespace>/<name> (repeatable)"
    )
    p.add_argument(
        "--health-check", action="append", default=None, help="<kind>/<name>.<namespace> (repeatable)"
    )
    p.add_argument("--health-check-timeout", default=None)
    p.add_argument("--wait", action="store_true", help="wait for all applied objects to become ready")
    p.add_argument("--service-account", default=None)
    p.add_argument("--retry-interval", default=None)
    p.add_argument("--decryption-provider", default=None, choices=["sops"])
    p.add_argument("--decryption-secret", default=None)
    _create_common(p)
    p = _leaf(
        create, "helmrelease", "create or update a HelmRelease", _create("helmrelease"), aliases=("hr",)
    )
    _name(p)
    p.add_argument(
        "--source",
        default=None,
        help="source of the chart: <kind>/<name>[.<namespace>], kind HelmRepository, GitRepository or Bucket",
    )
    p.add_argument("--chart", default=None, help="Helm chart name, or its path in a GitRepository or Bucket")
    p.add_argument(
        "--chart-ref",
        default=None,
        help="chart from an object instead: <kind>/<name>[.<namespace>], kind OCIRepository or HelmChart",
    )
    p.add_argument("--chart-version", default=None, help="semver range of the chart version")
    p.add_argument("--chart-interval", default=None, help="interval of the HelmChart made from the template")
    p.add_argument(
        "--reconcile-strategy", default=None, help="the HelmChart's: ChartVersion (default) or Revision"
    )
    p.add_argument(
        "--release-name", default=None, help="Helm release name (default [<target-namespace>-]<name>)"
    )
    p.add_argument("--target-namespace", default=None, help="namespace to install into")
    p.add_argument(
        "--storage-namespace", default=None, help="namespace of the release storage (default the target's)"
    )
    p.add_argument(
        "--create-target-namespace", action="store_true", help="create the target namespace if missing"
    )
    p.add_argument(
        "--depends-on",
        action="append",
        default=None,
        help="HelmReleases to be Ready first: <name> or <namespace>/<name> (repeatable, comma-separated)",
    )
    p.add_argument(
        "--values", action="append", default=None, help="local values files, merged in order (repeatable)"
    )
    p.add_argument(
        "--values-from",
        action="append",
        default=None,
        help="Secret/<name> or ConfigMap/<name> with a values.yaml key (repeatable)",
    )
    p.add_argument("--crds", default=None, help="CRDs policy on upgrade: Skip, Create or CreateReplace")
    p.add_argument("--service-account", default=None, help="service account to impersonate")
    p.add_argument(
        "--kubeconfig-secret-ref", default=None, help="Secret with the kubeconfig of a remote cluster"
    )
    _create_common(p)
    csec = create.add_parser("secret", help="create or update a Secret")
    _globals(csec, suppress=True)
    ssub = csec.add_subparsers(dest="secret_kind", metavar="<secret kind>", required=True)
    p = _leaf(ssub, "git", "create or update a Secret for Git authentication", _create("secret git"))
    _name(p)
    p.add_argument("--url", required=True)
    p.add_argument("-u", "--username", default=None)
    p.add_argument("-p", "--password", default=None)
    p.add_argument("--bearer-token", default=None)
    p.add_argument("--private-key-file", default=None)
    p.add_argument("--known-hosts-file", default=None)
    p.add_argument("--ca-file", default=None)
    _create_common(p, interval=False)

    p = _leaf(
        create,
        "receiver",
        "create or update a Receiver (webhooks that trigger reconciles)",
        _create("receiver"),
    )
    _name(p)
    p.add_argument(
        "--type", required=True, help="generic, generic-hmac, github, gitlab, bitbucket, harbor, ..."
    )
    p.add_argument("--event", action="append", default=None, help="event to accept (repeatable)")
    p.add_argument(
        "--resource",
        action="append",
        default=None,
        help="<Kind>/<name>[.<namespace>] to reconcile (repeatable)",
    )
    p.add_argument("--secret-ref", required=True, help="Secret with the `token` key")
    _create_common(p, interval=False)

    # get
    get = _group(verbs, "get", "show the status of Flux objects")

    def get_flags(p: argparse.ArgumentParser) -> None:
        _name(p, required=False)
        p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
        p.add_argument("--status-selector", default="", help="filter by conditions, e.g. ready=false")
        p.add_argument("-w", "--watch", action="store_true", help="print a row each time an object changes")
        p.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")

    gsrc = get.add_parser("sources", help="get sources", aliases=["source"])
    _globals(gsrc, suppress=True)
    gsub = gsrc.add_subparsers(dest="source_kind", metavar="<source kind>", required=True)
    for word, kind in SOURCE_WORDS.items():
        get_flags(_leaf(gsub, word, f"get {kind.kind} statuses", _get((kind,))))
    get_flags(_leaf(gsub, "all", "get all sources' statuses", _get(k.SOURCES)))
    for word, aliases, kind in OTHER_KINDS:
        get_flags(
            _leaf(get, f"{word}s", f"get {kind.kind} statuses", _get((kind,)), aliases=(word, *aliases[1:]))
        )
    get_flags(_leaf(get, "alerts", "get Alert statuses", _get((k.ALERT,)), aliases=("alert",)))
    get_flags(
        _leaf(
            get, "alert-providers", "get Provider statuses", _get((k.PROVIDER,)), aliases=("alert-provider",)
        )
    )
    get_flags(_leaf(get, "all", "get the status of everything", _get(k.ALL)))

    # reconcile / suspend / resume
    for verb, handler_for, extra in (
        ("reconcile", _reconcile, _reconcile_flags),
        ("suspend", _suspend, _all_flag),
        ("resume", _resume, _resume_flags),
    ):
        grp = _group(
            verbs,
            verb,
            {
                "reconcile": "ask a controller to reconcile now and follow it",
                "suspend": "suspend reconciliation",
                "resume": "resume reconciliation",
            }[verb],
        )
        _add_source_kinds(grp, verb, handler_for, extra)
        for word, aliases, kind in OTHER_KINDS:
            extra(_leaf(grp, word, f"{verb} a {kind.kind}", handler_for(kind), aliases=aliases))
        if verb != "reconcile":
            extra(_leaf(grp, "alert", f"{verb} an Alert", handler_for(k.ALERT), aliases=("alerts",)))
            extra(_leaf(grp, "alert-provider", f"{verb} a Provider", handler_for(k.PROVIDER)))

    # events
    p = _leaf(verbs, "events", "show the Kubernetes events of Flux objects", _command("events"))
    p.add_argument("--for", dest="for_", default=None, help="only events of <Kind>/<name>")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-w", "--watch", action="store_true")

    # tree / diff / build
    grp = _group(verbs, "tree", "show the objects a Kustomization or HelmRelease manages, as a tree")
    for word, aliases, what in (
        ("kustomization", ("ks",), "the inventory of a Kustomization (recursive)"),
        ("helmrelease", ("hr",), "the objects of a HelmRelease's latest release"),
    ):
        p = _leaf(grp, word, what, _command("tree"), aliases=aliases)
        _name(p)
        p.add_argument("--compact", action="store_true", help="only Flux objects")
        p.add_argument("-o", "--output", choices=["tree", "yaml", "json"], default="tree")
    grp = _group(verbs, "diff", "diff a local path against the cluster")
    p = _leaf(
        grp,
        "kustomization",
        "server-side dry-run diff of a local build (exit 1 when there is a diff)",
        _command("diff"),
        aliases=("ks",),
    )
    _local_build_flags(p)
    p.add_argument(
        "--strict-substitute",
        action="store_true",
        help="fail on a variable with no value and no default (the controller's default behaviour)",
    )
    grp = _group(verbs, "build", "build a Kustomization locally")
    p = _leaf(
        grp,
        "kustomization",
        "kustomize build and substitute like the controller does",
        _command("build"),
        aliases=("ks",),
    )
    _local_build_flags(p)
    p.add_argument(
        "--dry-run", action="store_true", help="do not read the cluster (substitute from the file only)"
    )
    p.add_argument(
        "--strict-substitute",
        action="store_true",
        help="fail on a variable with no value and no default (the controller's default behaviour)",
    )

    # export
    grp = _group(verbs, "export", "print objects as YAML, without status")
    esrc = grp.add_parser("source", help="export sources", aliases=["sources"])
    _globals(esrc, suppress=True)
    esub = esrc.add_subparsers(dest="source_kind", metavar="<source kind>", required=True)
    for word, kind in SOURCE_WORDS.items():
        _export_flags(_leaf(esub, word, f"export {kind.kind} objects", _export((kind,))))
    _export_flags(_leaf(esub, "all", "export all sources", _export(k.SOURCES)))
    for word, aliases, kind in OTHER_KINDS:
        _export_flags(_leaf(grp, word, f"export {kind.kind} objects", _export((kind,)), aliases=aliases))
    _export_flags(_leaf(grp, "alert", "export Alerts", _export((k.ALERT,))))
    _export_flags(_leaf(grp, "alert-provider", "export Providers", _export((k.PROVIDER,))))
    return root


def _local_build_flags(p: argparse.ArgumentParser) -> None:
    """What `diff` and `build` share: the Kustomization's name and the local tree to build."""
    _name(p)
    p.add_argument("--path", required=True, help="local directory to build")
    p.add_argument(
        "--kustomization-file", default=None, help="local Kustomization YAML to use instead of the cluster's"
    )


def _create_common(p: argparse.ArgumentParser, interval: bool = True) -> None:
    if interval:
        p.add_argument("--interval", default="1m", help="reconcile interval (default 1m)")
    p.add_argument("--label", action="append", default=None, help="key=value labels (repeatable)")
    p.add_argument("--export", action="store_true", help="print the YAML instead of applying it")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the object to become ready")


def _reconcile_flags(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("--with-source", action="store_true", help="reconcile the source first")


def _all_flag(p: argparse.ArgumentParser) -> None:
    _name(p, required=False)
    p.add_argument("--all", action="store_true", help="every object of the kind in the namespace")


def _resume_flags(p: argparse.ArgumentParser) -> None:
    _all_flag(p)
    p.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for the objects to become ready (default true)",
    )


def _export_flags(p: argparse.ArgumentParser) -> None:
    _name(p, required=False)
    p.add_argument("--all", action="store_true", help="every object of the kind in the namespace")


async def _run(args: argparse.Namespace) -> int:
    from tide.cli.session import Session

    session = Session(args)
    try:
        return int(await args.handler(session))
    finally:
        await session.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from tide.cli.output import Printer

    printer = Printer()
    try:
        code = asyncio.run(_run(args))
    except CliError as exc:
        printer.failure(exc.message)
        if exc.hint:
            printer.hint(exc.hint)
        code = exc.exit_code
    except (OSError, aiohttp.ClientError) as exc:  # the API server is down or went away mid-command
        printer.failure(f"cannot reach the Kubernetes API: {exc}")
        printer.hint("is the cluster running? check --kubeconfig/--context, then retry")
        code = EXIT_API
    except ValueError as exc:  # invalid flag values caught late (durations, selectors)
        printer.failure(str(exc))
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())
