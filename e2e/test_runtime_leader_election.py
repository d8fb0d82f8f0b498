"""Leader election on a Lease: of two replicas only the leader reconciles; when it dies the other takes
over within the lease duration; on SIGTERM the Lease is released at once."""

from __future__ import annotations

import json
import signal
import time

import pytest

from e2e.fixtures.runtime import create_probe, is_ready, patch_probe, status_of, wait_for, wait_probe

pytestmark = pytest.mark.e2e

LEASE = "runtime-probe-controller-leader-election"


def elect_args(namespace: str, lease: str = "6s", renew: str = "4s", retry: str = "1s") -> list[str]:
    return [
        "--enable-leader-election",
        f"--leader-election-namespace={namespace}",
        f"--leader-election-lease-duration={lease}",
        f"--leader-election-renew-deadline={renew}",
        f"--leader-election-retry-period={retry}",
    ]


def lease_holder(kubectl, namespace: str) -> str | None:
    result = kubectl("get", "lease", LEASE, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)["spec"].get("holderIdentity")


def is_leader(controller) -> bool:
    return controller.metric("leader_election_master_status", name=LEASE) == 1


def test_only_the_leader_reconciles_and_the_standby_takes_over(start_probe, kubectl, namespace) -> None:
    first = start_probe(*elect_args(namespace))
    wait_for(lambda: is_leader(first), what="first replica leads")
    second = start_probe(*elect_args(namespace))
    create_probe(kubectl, "p", namespace)
    obj = wait_probe(kubectl, "p", namespace, is_ready)
    assert first.reconciled(obj)
    assert not is_leader(second)
    holder = lease_holder(kubectl, namespace)
    assert holder

    first.stop(signal.SIGKILL)  # no release: the standby must wait the lease out
    killed_at = time.monotonic()
    wait_for(lambda: is_leader(second), timeout=30, what="standby leads")
    took = time.monotonic() - killed_at
    assert lease_holder(kubectl, namespace) != holder
    patch_probe(kubectl, "p", namespace, {"spec": {"message": "after failover"}})
    obj = wait_probe(
        kubectl,
        "p",
        namespace,
        lambda o: is_ready(o) and second.reconciled(o),
        what="reconciled by the new leader",
    )
    assert status_of(obj)["lastGeneration"] == 2
    print(f"takeover {took:.1f}s after the leader was killed (lease 6s, retry 1s)")


def test_lease_is_released_on_sigterm(start_probe, kubectl, namespace) -> None:
    first = start_probe(*elect_args(namespace, lease="60s", renew="40s", retry="1s"))
    wait_for(lambda: is_leader(first), what="first replica leads")
    second = start_probe(*elect_args(namespace, lease="60s", renew="40s", retry="1s"))
    holder = lease_holder(kubectl, namespace)
    assert first.stop(signal.SIGTERM) == 0
    assert lease_holder(kubectl, namespace) != holder, "released on shutdown (or already taken over)"
    assert any(str(e.get("msg", "")).startswith("released lease") for e in first.log_entries())
    # The standby does not wait 60s for the lease to expire.
    wait_for(lambda: is_leader(second), timeout=20, what="standby leads after release")
    create_probe(kubectl, "q", namespace)
    obj = wait_probe(kubectl, "q", namespace, is_ready)
    assert second.reconciled(obj)


def test_losing_the_lease_stops_the_process(start_probe, kubectl, namespace) -> None:
    leader = start_probe(*elect_args(namespace))
    wait_for(lambda: is_leader(leader), what="leads")
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    patch = {"spec": {"holderIdentity": "someone-else", "renewTime": now, "leaseDurationSeconds": 60}}
    kubectl("patch", "lease", LEASE, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    assert leader.proc is not None
    assert leader.proc.wait(30) == 1, "exits 1 like Flux's main on 'leader election lost'"
    assert any(e.get("msg") == "leader election lost" for e in leader.log_entries())
