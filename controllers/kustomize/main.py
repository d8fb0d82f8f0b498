"""tide-kustomize-controller: Flux's kustomize-controller flags, one reconciler."""

from __future__ import annotations

import argparse
from typing import Any

from tide.controllers.kustomize.options import KustomizeOptions
from tide.controllers.kustomize.reconciler import KustomizationReconciler
from tide.shared.kustomize.build import DEFAULT_MEMORY_LIMIT
from tide.shared.runtime.process import add_bool, controller_arg_parser, feature_gates, run_controller

NAME = "kustomize-controller"


def arg_parser() -> argparse.ArgumentParser:
    parser = controller_arg_parser(NAME, concurrent_default=4)
    parser.add_argument(
        "--concurrent-ssa", type=int, default=4, help="The number of concurrent server-side apply operations."
    )
    add_bool(
        parser,
        "--no-remote-bases",
        False,
        "Disallow remote bases usage in Kustomize overlays; remote bases are refused.",
    )
    parser.add_argument(
        "--http-retry", type=int, default=9, help="The maximum number of retries when fetching artifacts."
    )
    parser.add_argument(
        "--artifact-cache-revisions",
        type=int,
        default=8,
        help="Extracted source revisions kept for Kustomizations that share a source, so each is "
        "downloaded once (0: every build downloads its own copy, as Flux does).",
    )
    parser.add_argument(
        "--build-memory-limit",
        type=int,
        default=DEFAULT_MEMORY_LIMIT,
        help="The memory in bytes each kustomize build may use; a build that needs more fails with "
        "BuildFailed (0: no limit). CPU time is limited by the Kustomization's timeout.",
    )
    parser.add_argument(
        "--sops-age-secret",
        default="",
        help="The name of a Secret in the runtime namespace with age keys for every Kustomization.",
    )
    parser.add_argument(
        "--override-manager",
        action="append",
        default=[],
        help="Field manager whose fields are overridden on apply (repeatable).",
    )
    parser.add_argument("--default-kubeconfig-service-account", default="")
    parser.add_argument("--default-decryption-service-account", default="")
    return parser


def options_from(args: argparse.Namespace) -> KustomizeOptions:
    return KustomizeOptions(
        requeue_dependency=args.requeue_dependency,
        no_cross_namespace_refs=args.no_cross_namespace_refs,
        no_remote_bases=args.no_remote_bases,
        concurrent_ssa=args.concurrent_ssa,
        artifact_cache_revisions=args.artifact_cache_revisions,
        sops_age_secret=args.sops_age_secret,
        runtime_namespace=args.runtime_namespace or "flux-system",
        override_managers=tuple(args.override_manager),
        build_memory_limit=args.build_memory_limit,
        feature_gates=feature_gates(args),
    )


def main(argv: list[str] | None = None) -> Any:
    args = arg_parser().parse_args(argv)
    reconciler = KustomizationReconciler(options_from(args))
    return run_controller(args, reconcilers=[reconciler], servers=[reconciler.artifacts])


if __name__ == "__main__":
    main()
