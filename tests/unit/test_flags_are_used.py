"""Every flag a controller accepts does something, or the controller refuses to start when it is
set: an accepted but ignored flag (a security flag above all) is worse than none."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tide.controllers.helm import main as helm_main
from tide.controllers.kustomize import main as kustomize_main
from tide.controllers.kustomize.reconciler import KustomizationReconciler
from tide.controllers.notification import main as notification_main
from tide.controllers.source import main as source_main
from tide.shared.runtime.process import UnavailableFlag, _RefuseWhenSet, refuse_unavailable_flags

ROOT = Path(__file__).resolve().parents[2]
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "source": source_main.build_parser,
    "kustomize": kustomize_main.arg_parser,
    "notification": notification_main.arg_parser,
    "helm": helm_main.arg_parser,
}
# Flags whose only accepted value is what Tide does (any other value is a usage error).
FIXED = {"artifact_digest_algo": ["sha256"]}


def _code(controller: str) -> str:
    """The code a controller runs: its package and the shared runtime and artifact client."""
    files = [*(ROOT / "controllers" / controller).rglob("*.py"), *(ROOT / "shared").rglob("*.py")]
    return "\n".join(p.read_text() for p in files)


def _flags(controller: str) -> list[argparse.Action]:
    return [a for a in PARSERS[controller]()._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("controller", PARSERS)
def test_every_flag_is_read_or_refused(controller: str) -> None:
    code = _code(controller)
    unused = []
    for action in _flags(controller):
        if isinstance(action, _RefuseWhenSet) or action.dest in FIXED:
            continue
        # Read as args.<dest>, options.<dest>, getattr(..., "<dest>") or _option(ctx, "<dest>").
        read = re.compile(rf"(?:args|options)\.{action.dest}\b|(?<!dest=)[\"']{action.dest}[\"']")
        if not read.search(code):
            unused.append(action.option_strings[0])
    assert unused == [], f"{controller} controller accepts flags nothing reads: {unused}"


@pytest.mark.parametrize("controller", PARSERS)
def test_fixed_flags_refuse_other_values(controller: str) -> None:
    for action in _flags(controller):
        if action.dest in FIXED:
            assert action.choices == FIXED[action.dest]
            with pytest.raises(SystemExit):
                PARSERS[controller]().parse_args([f"{action.option_strings[0]}=other"])


@pytest.mark.parametrize(
    ("controller", "flag"),
    [(c, a.option_strings[0]) for c in PARSERS for a in _flags(c) if isinstance(a, _RefuseWhenSet)],
)
def test_unavailable_flags_are_refused_when_set(controller: str, flag: str) -> None:
    parser = PARSERS[controller]()
    assert parser.parse_args([]).unavailable_flags == ()
    assert parser.parse_args([f"{flag}="]).unavailable_flags == ()
    (refused,) = parser.parse_args([f"{flag}=tenant"]).unavailable_flags
    assert isinstance(refused, UnavailableFlag) and flag in str(refused)


def test_workload_identity_defaults_stop_the_kustomize_controller(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        kustomize_main.main(["--default-decryption-service-account=tenant"])
    assert exited.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert entry["level"] == "error"
    assert "--default-decryption-service-account" in entry["msg"]
    assert "workload identity" in entry["msg"]


def test_kustomize_flags_without_refusals_remain() -> None:
    """The refusing flags are Flux's workload identity defaults; the others are honoured."""
    refused = {a.option_strings[0] for a in _flags("kustomize") if isinstance(a, _RefuseWhenSet)}
    assert refused == {"--default-kubeconfig-service-account", "--default-decryption-service-account"}


def test_kustomize_impersonation_flags_reach_the_reconciler() -> None:
    args = kustomize_main.arg_parser().parse_args(
        ["--default-service-account=tenant", "--insecure-kubeconfig-exec", "--insecure-kubeconfig-tls=false"]
    )
    options = kustomize_main.options_from(args)
    assert options.default_service_account == "tenant"
    assert options.kubeconfig_policy.allow_exec and not options.kubeconfig_policy.allow_insecure_tls


@pytest.mark.parametrize(
    ("controller", "gates", "refused"),
    [
        ("kustomize", "CancelHealthCheckOnNewRevision=true", 0),
        ("kustomize", "CacheSecretsAndConfigMaps=true", 1),  # a Flux gate Tide does not have
        ("kustomize", "CancelHealthCheckOnNewRevision=maybe", 1),
        ("source", "CancelHealthCheckOnNewRevision=true", 1),
        ("notification", "", 0),
    ],
)
def test_unknown_feature_gates_stop_the_controller(controller: str, gates: str, refused: int) -> None:
    args = PARSERS[controller]().parse_args([f"--feature-gates={gates}"])
    if refused:
        with pytest.raises(SystemExit) as exited:
            refuse_unavailable_flags(args)
        assert exited.value.code == 1
    else:
        refuse_unavailable_flags(args)


def test_http_retry_reaches_the_artifact_download() -> None:
    args = kustomize_main.arg_parser().parse_args(["--http-retry=2"])
    assert KustomizationReconciler(kustomize_main.options_from(args)).artifacts.retries == 2


@pytest.mark.parametrize("flag", ["--watch-configs-label-selector=a=b", "--http-retry=x"])
def test_removed_or_malformed_flags_are_usage_errors(flag: str) -> None:
    with pytest.raises(SystemExit):
        kustomize_main.arg_parser().parse_args([flag])


@pytest.mark.parametrize("controller", ["source", "notification"])
def test_dependency_flags_only_where_there_are_dependencies(controller: str) -> None:
    with pytest.raises(SystemExit):
        PARSERS[controller]().parse_args(["--requeue-dependency=5s"])
