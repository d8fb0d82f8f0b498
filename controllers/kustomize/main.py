"""tide-kustomize-controller: Flux's kustomize-controller flags, one reconciler."""

from __future__ import annotations

import argparse
from typing import Any

from tide.controllers.kustomize.options import KustomizeOptions
from tide.controllers.kustomize.reconciler import (
    CANCEL_HEALTH_CHECK_GATE,
    STRICT_SUBSTITUTIONS_GATE,
    KustomizationReconciler,
)
from tide.shared.api.artifact_generator import EXTERNAL_ARTIFACT_GATE
from tide.shared.artifact import DEFAULT_MAX_ENTRIES
from tide.shared.cel.sandbox import SANDBOX
from tide.shared.kustomize.build import DEFAULT_MEMORY_LIMIT
from tide.shared.runtime.process import (
    add_bool,
    add_impersonation_flags,
    add_no_cross_namespace_refs,
    add_requeue_dependency,
    add_source_storage_addr,
    add_unavailable,
    controller_arg_parser,
    feature_gates,
    kubeconfig_policy,
    run_controller,
    source_storage_addresses,
)

NAME = "kustomize-controller"


def arg_parser() -> argparse.ArgumentParser:
    parser = controller_arg_parser(
        NAME,
        concurrent_default=4,
        known_feature_gates=[CANCEL_HEALTH_CHECK_GATE, EXTERNAL_ARTIFACT_GATE, STRICT_SUBSTITUTIONS_GATE],
    )
    add_requeue_dependency(parser)
    add_no_cross_namespace_refs(parser)
    parser.add_argument(
        "--concurrent-ssa", type=int, default=4, help="The number of concurrent server-side apply operations."
    )
    add_bool(
        parser,
        "--no-remote-bases",
        False,
        "Disallow remote bases usage in Kustomize overlays; remote bases are refused.",
    )
    add_bool(
        parser,
        "--realtime-drift-correction",
        True,
        "Reconcile a Kustomization as soon as an object it applied is changed in a field it owns or "
        "deleted (false: only at the interval, as Flux does).",
    )
    parser.add_argument(
        "--http-retry",
        type=int,
        default=9,
        help="The maximum number of retries when fetching an artifact fails with a connection error "
        "or a 5xx answer.",
    )
    add_source_storage_addr(parser)
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
        "--artifact-max-entries",
        type=int,
        default=DEFAULT_MAX_ENTRIES,
        help="Fail artifacts with more files, directories and symlinks than this (0: no limit).",
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
    add_impersonation_flags(parser)
    # Flux reads it for workload identity only (cloud KMS for SOPS), which Tide refuses: refusing
    # to start beats accepting and ignoring it.
    add_unavailable(
        parser,
        "--default-decryption-service-account",
        "it names the ServiceAccount of spec.decryption.serviceAccountName (workload identity for "
        "cloud KMS), which Tide does not support yet",
    )
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
        artifact_max_entries=args.artifact_max_entries,
        http_retry=args.http_retry,
        source_storage=tuple(source_storage_addresses(args)),
        drift_correction=args.realtime_drift_correction,
        default_service_account=args.default_service_account,
        kubeconfig_policy=kubeconfig_policy(args),
    )


def main(argv: list[str] | None = None) -> Any:
    args = arg_parser().parse_args(argv)
    reconciler = KustomizationReconciler(options_from(args))
    return run_controller(args, reconcilers=[reconciler], servers=[reconciler.artifacts, SANDBOX])


if __name__ == "__main__":
    main()
