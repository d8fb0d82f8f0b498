"""Flux's common controller flags: Go-style booleans, durations as seconds, listen addresses."""

import pytest

from tide.shared.runtime import controller_arg_parser, feature_gates
from tide.shared.runtime.addr import parse_address
from tide.shared.runtime.process import add_requeue_dependency


def test_defaults_are_fluxs() -> None:
    parser = controller_arg_parser("kustomize-controller", 4)
    add_requeue_dependency(parser)
    args = parser.parse_args([])
    assert args.controller_name == "kustomize-controller"
    assert args.concurrent == 4
    assert args.metrics_addr == ":8080" and args.health_addr == ":9440"
    assert args.requeue_dependency == 30
    assert (args.min_retry_delay, args.max_retry_delay) == (0.75, 900)
    assert args.interval_jitter_percentage == 5
    assert (args.kube_api_qps, args.kube_api_burst) == (50, 300)
    assert args.watch_all_namespaces is True and args.enable_leader_election is False
    assert (
        args.leader_election_lease_duration,
        args.leader_election_renew_deadline,
        args.leader_election_retry_period,
    ) == (35, 30, 5)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--enable-leader-election"], True),
        (["--enable-leader-election=true"], True),
        (["--enable-leader-election=false"], False),
        ([], False),
    ],
)
def test_go_style_booleans(argv: list[str], expected: bool) -> None:
    assert controller_arg_parser("x").parse_args(argv).enable_leader_election is expected


def test_durations_and_selectors() -> None:
    parser = controller_arg_parser("x")
    add_requeue_dependency(parser)
    args = parser.parse_args(
        [
            "--requeue-dependency=5s",
            "--max-retry-delay=1h30m",
            "--watch-all-namespaces=false",
            "--watch-label-selector=sharding.fluxcd.io/key=shard1",
            "--feature-gates=A=true,B=false",
        ]
    )
    assert args.requeue_dependency == 5 and args.max_retry_delay == 5400
    assert args.watch_all_namespaces is False
    assert args.watch_label_selector == "sharding.fluxcd.io/key=shard1"
    assert feature_gates(args) == {"A": True, "B": False}


def test_bad_duration_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        controller_arg_parser("x").parse_args(["--requeue-dependency=soon"])


def test_runtime_namespace_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_NAMESPACE", "flux-system")
    assert controller_arg_parser("x").parse_args([]).runtime_namespace == "flux-system"


def test_listen_addresses() -> None:
    assert parse_address(":8080") == ("0.0.0.0", 8080)
    assert parse_address("127.0.0.1:9440") == ("127.0.0.1", 9440)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address("0") is None and parse_address("") is None


def test_kustomize_options_from_flags() -> None:
    from tide.controllers.kustomize.main import arg_parser, options_from
    from tide.controllers.kustomize.options import KustomizeOptions

    assert options_from(arg_parser().parse_args(["--runtime-namespace="])) == KustomizeOptions()
    options = options_from(
        arg_parser().parse_args(
            [
                "--requeue-dependency=5s",
                "--no-remote-bases",
                "--concurrent-ssa=2",
                "--override-manager=a",
                "--override-manager=b",
                "--runtime-namespace=flux",
            ]
        )
    )
    assert options.requeue_dependency == 5 and options.no_remote_bases and options.concurrent_ssa == 2
    assert options.override_managers == ("a", "b") and options.runtime_namespace == "flux"
