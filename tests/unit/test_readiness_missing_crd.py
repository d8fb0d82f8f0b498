"""/readyz of a controller whose CRD is not installed names the CRD and how to install it."""

from __future__ import annotations

from types import SimpleNamespace

from tide.shared.api import GitRepository
from tide.shared.kube.informer import Informer
from tide.shared.runtime import controller_arg_parser
from tide.shared.runtime.kind_controller import KindInfo
from tide.shared.runtime.process import ControllerProcess


def test_readyz_names_the_missing_crd() -> None:
    args = controller_arg_parser("source-controller").parse_args(["--health-addr=127.0.0.1:0"])
    process = ControllerProcess(args, [])
    informer = Informer(None, "source.toolkit.fluxcd.io/v1", "GitRepository")  # type: ignore[arg-type]
    process.controllers.append(SimpleNamespace(info=KindInfo.of(GitRepository), informer=informer))  # type: ignore[arg-type]
    assert process._informers_synced() == "waiting for the caches of GitRepository"
    informer.missing = True  # an empty cache: the check must not mistake it for no informer
    assert process._informers_synced() == (
        "CustomResourceDefinition gitrepositories.source.toolkit.fluxcd.io not installed: "
        "run `tide install --crds-only` (or install the Helm chart charts/tide)"
    )
