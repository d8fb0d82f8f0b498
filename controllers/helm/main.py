"""tide-helm-controller: Flux's helm-controller flags, one reconciler (HelmRelease) and its Helm engine."""

from __future__ import annotations

import argparse
from typing import Any

from tide.controllers.helm.reconciler import HelmReleaseReconciler
from tide.controllers.helm.start import CONCURRENT_DEFAULT
from tide.shared.api.artifact_generator import EXTERNAL_ARTIFACT_GATE
from tide.shared.cel.sandbox import SANDBOX
from tide.shared.runtime.process import (
    add_impersonation_flags,
    add_no_cross_namespace_refs,
    add_requeue_dependency,
    add_source_storage_addr,
    controller_arg_parser,
    run_controller,
)

NAME = "helm-controller"


def arg_parser() -> argparse.ArgumentParser:
    parser = controller_arg_parser(
        NAME, concurrent_default=CONCURRENT_DEFAULT, known_feature_gates=[EXTERNAL_ARTIFACT_GATE]
    )
    add_requeue_dependency(parser)
    add_no_cross_namespace_refs(parser)
    add_source_storage_addr(parser)
    parser.add_argument(
        "--watch-configs-label-selector",
        default="reconcile.fluxcd.io/watch=Enabled",
        help="ConfigMaps and Secrets with these labels trigger a reconcile of the HelmReleases whose "
        "valuesFrom reads them (empty: none is watched).",
    )
    add_impersonation_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> Any:
    args = arg_parser().parse_args(argv)
    reconciler = HelmReleaseReconciler(args)
    return run_controller(args, reconcilers=[reconciler], servers=[reconciler, SANDBOX])


if __name__ == "__main__":
    main()
