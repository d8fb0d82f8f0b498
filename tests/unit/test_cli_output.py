"""Tables, events rows, tree rendering, diff masking and the command line surface."""

from __future__ import annotations

import datetime as dt

import pytest

from tide.cli.commands import diff, events, tree
from tide.cli.main import build_parser
from tide.cli.output import render_table


def test_table_pads_columns_and_colours_ready_only_when_asked() -> None:
    text = render_table(["NAME", "READY", "MESSAGE"], [["a", "True", "ok"], ["long-name", "False", "bad"]])
    lines = text.splitlines()
    assert lines[0] == "NAME        READY   MESSAGE"
    assert lines[2] == "long-name   False   bad"
    coloured = render_table(["NAME", "READY"], [["a", "False"]], colour=True)
    assert "\033[31m" in coloured and "\033[" not in text


def test_events_rows_filter_flux_kinds_and_sort() -> None:
    now = dt.datetime(2026, 1, 1, 0, 10, tzinfo=dt.UTC)
    evs = [
        {
            "involvedObject": {"kind": "Kustomization", "name": "a", "namespace": "n"},
            "type": "Normal",
            "reason": "ReconciliationSucceeded",
            "message": "ok",
            "lastTimestamp": "2026-01-01T00:09:00Z",
        },
        {
            "involvedObject": {"kind": "Pod", "name": "p"},
            "type": "Normal",
            "reason": "Started",
            "message": "",
            "lastTimestamp": "2026-01-01T00:00:00Z",
        },
        {
            "involvedObject": {"kind": "GitRepository", "name": "g", "namespace": "n"},
            "type": "Warning",
            "reason": "GitOperationFailed",
            "message": "auth\n",
            "lastTimestamp": "2026-01-01T00:05:00Z",
        },
    ]
    rows = events.rows(evs, None, None, False, now)
    assert rows == [
        ["5m0s", "Warning", "GitOperationFailed", "GitRepository/g", "auth"],
        ["60s", "Normal", "ReconciliationSucceeded", "Kustomization/a", "ok"],
    ]
    assert events.rows(evs, "Kustomization", "a", True, now)[0][0] == "n"
    assert events.age("", now) == "<unknown>"
    assert events.age("2025-12-31T00:00:00Z", now) == "1d"


def test_tree_render() -> None:
    root = tree.Node(
        "Kustomization",
        "flux-system",
        "flux-system",
        children=[
            tree.Node("Namespace", "flux-system"),
            tree.Node(
                "Kustomization", "apps", "flux-system", children=[tree.Node("Deployment", "web", "default")]
            ),
        ],
    )
    assert tree.render(root) == "\n".join(
        [
            "Kustomization/flux-system/flux-system",
            "├── Namespace/flux-system",
            "└── Kustomization/flux-system/apps",
            "    └── Deployment/default/web",
        ]
    )
    assert tree.parse_entry("default_podinfo_apps_Deployment") == ("default", "podinfo", "apps", "Deployment")
    assert tree.parse_entry("_system__leader_rbac.authorization.k8s.io_ClusterRole")[1] == "system:leader"


def test_diff_masks_secret_values() -> None:
    live = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"a": "MQ==", "b": "Mg=="},
    }
    desired = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"a": "MQ==", "b": "Mw=="},
    }
    text = diff.unified(live, desired, "Secret/s")
    assert "MQ==" not in text and "Mg==" not in text and "Mw==" not in text
    assert "-  b: '*** (before)'" in text and "+  b: '*** (after)'" in text
    assert diff.comparable({"metadata": {"uid": "x", "managedFields": [], "name": "n"}, "status": {}}) == {
        "metadata": {"name": "n"}
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "sources", "git", "-A", "--status-selector", "ready=false"],
        ["get", "ks", "-n", "apps"],
        ["-n", "apps", "get", "kustomizations", "-w"],
        ["reconcile", "ks", "apps", "--with-source"],
        ["reconcile", "source", "git", "flux-system"],
        ["suspend", "kustomization", "--all"],
        ["resume", "source", "git", "x", "--no-wait"],
        ["create", "source", "git", "x", "--url", "https://x", "--export"],
        ["create", "ks", "x", "--source", "x", "--export"],
        ["create", "secret", "git", "x", "--url", "https://x", "-u", "a", "-p", "b", "--export"],
        ["export", "source", "git", "--all"],
        ["tree", "ks", "x"],
        ["diff", "ks", "x", "--path", "."],
        ["build", "ks", "x", "--path", "."],
        ["bootstrap", "git", "--url", "http://x/y.git", "--path", "clusters/dev", "--crds-only"],
        ["install", "--export"],
        ["check", "--pre"],
        ["uninstall", "-s"],
        ["events", "--for", "Kustomization/x"],
        ["version", "--client"],
    ],
)
def test_parser_accepts_flux_commands(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.handler is not None


def test_global_flags_before_and_after_the_verb() -> None:
    a = build_parser().parse_args(["-n", "x", "--timeout", "1m", "get", "ks"])
    b = build_parser().parse_args(["get", "ks", "-n", "x", "--timeout", "1m"])
    assert (a.namespace, a.timeout) == (b.namespace, b.timeout) == ("x", "1m")
    assert build_parser().parse_args(["get", "ks"]).namespace == "flux-system"
