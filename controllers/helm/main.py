"""tide-helm-controller: Flux's helm-controller flags, one reconciler (HelmRelease) and its Helm engine."""

from __future__ import annotations

import argparse
from typing import Any

from tide.controllers.helm.reconciler import HelmReleaseReconciler
from tide.shared.runtime.controller import controller_arg_parser, run_controller

NAME = "helm-controller"


def arg_parser() -> argparse.ArgumentParser:
    return controller_arg_parser(NAME, concurrent_default=4)


def main(argv: list[str] | None = None) -> Any:
    args = arg_parser().parse_args(argv)
    reconciler = HelmReleaseReconciler(args)
    return run_controller(args, reconcilers=[reconciler], servers=[reconciler])


if __name__ == "__main__":
    main()
