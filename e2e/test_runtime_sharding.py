"""Sharding with --watch-label-selector (Flux's sharding.fluxcd.io/key) and the namespace restriction
of --watch-all-namespaces=false."""

from __future__ import annotations

import time

import pytest

from e2e.fixtures.runtime import create_probe, get_probe, is_ready, status_of, wait_probe

pytestmark = pytest.mark.e2e

SHARD_KEY = "sharding.fluxcd.io/key"


def test_each_shard_reconciles_its_own_objects(start_probe, kubectl, namespace) -> None:
    shard1 = start_probe(f"--watch-label-selector={SHARD_KEY}=shard1")
    default = start_probe(f"--watch-label-selector=!{SHARD_KEY}")
    create_probe(kubectl, "in-shard1", namespace, labels={SHARD_KEY: "shard1"})
    create_probe(kubectl, "unsharded", namespace)
    create_probe(kubectl, "in-shard2", namespace, labels={SHARD_KEY: "shard2"})
    assert shard1.reconciled(wait_probe(kubectl, "in-shard1", namespace, is_ready))
    assert default.reconciled(wait_probe(kubectl, "unsharded", namespace, is_ready))
    time.sleep(2)
    assert not status_of(get_probe(kubectl, "in-shard2", namespace)).get("reconciledBy"), (
        "no shard2 controller"
    )

    # Moving an object to shard1 hands it over.
    kubectl("label", "probe", "unsharded", "-n", namespace, f"{SHARD_KEY}=shard1")
    kubectl("annotate", "probe", "unsharded", "-n", namespace, "reconcile.fluxcd.io/requestedAt=moved")
    obj = wait_probe(
        kubectl,
        "unsharded",
        namespace,
        lambda o: status_of(o).get("lastHandledReconcileAt") == "moved",
        what="moved to shard1",
    )
    assert shard1.reconciled(obj)


def test_watch_all_namespaces_false_watches_only_the_runtime_namespace(
    start_probe, kubectl, namespace
) -> None:
    start_probe()  # --watch-all-namespaces=false --runtime-namespace=<namespace>
    other = f"{namespace}-other"[:63]
    kubectl("create", "namespace", other)
    try:
        create_probe(kubectl, "elsewhere", other)
        create_probe(kubectl, "here", namespace)
        wait_probe(kubectl, "here", namespace, is_ready)
        time.sleep(2)
        assert not status_of(get_probe(kubectl, "elsewhere", other)).get("reconciledBy")
    finally:
        kubectl("delete", "namespace", other, "--wait=false", check=False)
