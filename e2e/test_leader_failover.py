"""Two replicas each of the source and kustomize controllers with leader election; each leader is
SIGKILLed while it reconciles (the source fetching a new revision, the kustomize controller applying
it). The standbys take over once the Lease expires; the source's artifact server moves with the
leader (the artifact URL in status names the new leader's address and resolves, the old one is
gone); the Kustomization converges on the new revision with nothing lost, and every object has one
field manager (nothing applied twice in conflict). A standby serves no artifacts and writes nothing.
"""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from e2e.cluster import free_port
from e2e.fixtures.kustomize import api_requests, scrape, wait_ks, wait_until
from e2e.fixtures.outages import assert_artifact_served, assert_nothing_lost, configmap, deploy_app
from e2e.fixtures.source import request_reconcile, secret, wait_for, wait_ready

pytestmark = pytest.mark.e2e

LEASE, RENEW, RETRY = "6s", "4s", "1s"
WRITES = ("create", "update", "patch", "delete", "deletecollection")


def elect(namespace: str) -> list[str]:
    return [
        "--enable-leader-election",
        f"--leader-election-namespace={namespace}",
        f"--leader-election-lease-duration={LEASE}",
        f"--leader-election-renew-deadline={RENEW}",
        f"--leader-election-retry-period={RETRY}",
        "--watch-all-namespaces=false",
        f"--runtime-namespace={namespace}",
        "--max-retry-delay=2s",
    ]


def leads(controller: Any) -> bool:
    samples = scrape(controller.metrics_url)
    return any(k.startswith("leader_election_master_status{") and v == 1 for k, v in samples.items())


def busy(controller: Any, kind: str) -> bool:
    """A reconcile of kind is in flight in this process."""
    try:
        samples = scrape(controller.metrics_url)
    except OSError:
        return False
    return samples.get(f'controller_runtime_active_workers{{controller="{kind}"}}', 0) > 0


def writes(controller: Any) -> float:
    return sum(v for verb, v in api_requests(scrape(controller.metrics_url)).items() if verb in WRITES)


def refused(address: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{address}/", timeout=2)
    except urllib.error.HTTPError:
        return False  # something answers
    except OSError:
        return True
    return False


def kill_when(controller: Any, kind: str, timeout: float = 30) -> None:
    """SIGKILL the process as soon as it is seen reconciling kind (polled: the kill lands mid-work)."""
    wait_until(lambda: busy(controller, kind), timeout, f"{controller.name} reconciling a {kind}", poll=0.02)
    controller.stop(signal.SIGKILL)


def desired(version: int) -> dict[str, dict[str, str]]:
    """Enough ConfigMaps that applying them takes a moment: v2 changes all, drops ten, adds ten."""
    names = range(0, 60) if version == 1 else range(10, 70)
    return {f"cm-{i}": {"v": str(version)} for i in names}


def files(version: int) -> dict[str, str | bytes | None]:
    docs = "---\n".join(configmap(name, **data) for name, data in desired(version).items())
    return {"app/all.yaml": docs}


def test_leaders_killed_mid_reconcile_standbys_take_over(  # type: ignore[no-untyped-def]
    start_controller: Callable[..., Any], git_server, kubectl, namespace, tmp_path
) -> None:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]

    def source(i: int) -> Any:
        return start_controller("source", f"--storage-path={tmp_path / f'storage-{i}'}",
                                f"--storage-addr={addresses[i]}", f"--storage-adv-addr={addresses[i]}",
                                *elect(namespace))  # fmt: skip

    def kustomize() -> Any:
        storage = f"--source-storage-addr={','.join(addresses)}"
        return start_controller("kustomize", storage, *elect(namespace))

    # The first replicas start and lead, then the standbys start.
    sources, kustomizes = [source(0)], [kustomize()]
    wait_until(lambda: leads(sources[0]) and leads(kustomizes[0]), 30, "the first replicas lead")
    sources.append(source(1))
    kustomizes.append(kustomize())
    assert not leads(sources[1]) and not leads(kustomizes[1])
    assert refused(addresses[1]), "a standby serves no artifacts"

    repo = git_server.create_repo(f"failover-{namespace}", files(1))
    first = f"main@sha1:{repo.head()}"
    # Over SSH: a fetch takes long enough for the kill to land in it.
    ssh = secret("ssh", {"identity": git_server.ssh_identity, "known_hosts": git_server.known_hosts})
    deploy_app(kubectl, namespace, repo.ssh_url, ssh)
    obj = wait_ready(kubectl, namespace, "app", first)
    assert obj["status"]["artifact"]["url"].startswith(f"http://{addresses[0]}/")
    wait_ks(kubectl, namespace, "app", revision=first)
    assert_nothing_lost(kubectl, namespace, "app", desired(1), outside=("outside",))
    standby_writes = writes(kustomizes[1])

    second = f"main@sha1:{repo.commit({'app/all.yaml': files(2)['app/all.yaml']}, 'v2')}"
    request_reconcile(kubectl, namespace, "app")
    kill_when(sources[0], "gitrepository")
    killed = time.monotonic()
    wait_until(lambda: leads(sources[1]), 30, "the standby source replica leads")
    print(f"source standby leads {time.monotonic() - killed:.1f}s after the kill (lease {LEASE})")
    kill_when(kustomizes[0], "kustomization")
    killed = time.monotonic()
    assert writes(kustomizes[1]) == standby_writes, "the kustomize standby wrote while it stood by"
    wait_until(lambda: leads(kustomizes[1]), 30, "the standby kustomize replica leads")
    print(f"kustomize standby leads {time.monotonic() - killed:.1f}s after the kill (lease {LEASE})")

    wait_ready(kubectl, namespace, "app", second, timeout=60)
    # The new leader's URL (even if the kill landed after the old leader stored the revision: the
    # new one does not have it and stores it again).
    obj = wait_for(kubectl, namespace, "app",
                   lambda o: o["status"]["artifact"]["url"].startswith(f"http://{addresses[1]}/"),
                   timeout=60, what="the artifact URL on the new leader")  # fmt: skip
    assert_artifact_served(obj, second)
    assert refused(addresses[0]), "the old leader's artifact server is gone"
    wait_ks(kubectl, namespace, "app", revision=second)
    assert_nothing_lost(kubectl, namespace, "app", desired(2), outside=("outside",))
    for name in desired(2):
        managers = kubectl("get", "configmap", name, "-n", namespace, "-o",
                           "jsonpath={.metadata.managedFields[*].manager}").stdout.split()  # fmt: skip
        assert len(managers) == 1, f"{name} has managers {managers}: applied twice in conflict"
    kubectl("delete", "kustomizations.kustomize.toolkit.fluxcd.io,gitrepositories.source.toolkit.fluxcd.io",
            "--all", "-n", namespace, "--timeout=60s", check=False)  # fmt: skip
