"""Leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm, Flux's timings).

A candidate takes the Lease when it is free, released, or its holder has not renewed it for
leaseDurationSeconds as measured on this process's own clock since the record last changed (so
clock skew between nodes does not matter). The leader renews every retry period and gives up
leadership when it cannot renew within the renew deadline. On shutdown the Lease is released
(holder cleared, duration 1 s) so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tide.shared.kube import KubeApiError, KubeClient
from tide.shared.runtime.metrics import LEADER

log = logging.getLogger("tide.runtime.leader")

LEASE_DURATION = 35.0
RENEW_DEADLINE = 30.0
RETRY_PERIOD = 5.0


def micro_time(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    def __init__(
        self,
        kube: KubeClient,
        name: str,
        namespace: str,
        identity: str | None = None,
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
    ) -> None:
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.is_leader = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0
        LEADER.labels(name=self.name).set(0)

    async def acquire(self) -> None:
        """Wait until this process holds the Lease."""
        logged = False
        while True:
            if await self.try_acquire_or_renew():
                log.info(
                    "successfully acquired lease %s/%s",
                    self.namespace,
                    self.name,
                    extra={"identity": self.identity},
                )
                return
            if not logged:
                log.info("attempting to acquire leader lease %s/%s...", self.namespace, self.name)
                logged = True
            await asyncio.sleep(self.retry_period)

    async def hold(self, on_lost: Callable[[], None] | None = None) -> None:
        """Renew until leadership is lost (then call on_lost and return) or cancelled."""
        while True:
            await asyncio.sleep(self.retry_period)
            if await self.try_acquire_or_renew():
                continue
            if time.monotonic() - self._last_renew >= self.renew_deadline or not self._holder_is_me():
                self._set_leader(False)
                log.error("leader election lost", extra={"lease": f"{self.namespace}/{self.name}"})
                if on_lost is not None:
                    on_lost()
                return

    def _holder_is_me(self) -> bool:
        return self._observed is None or self._observed[0] in (self.identity, None)

    def _set_leader(self, leader: bool) -> None:
        self.is_leader = leader
        LEADER.labels(name=self.name).set(1 if leader else 0)

    def _observe(self, spec: dict[str, Any]) -> None:
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            spec.get("leaseTransitions"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()

    async def try_acquire_or_renew(self) -> bool:
        try:
            return await self._try_acquire_or_renew()
        except (KubeApiError, OSError, TimeoutError) as err:
            log.warning("error updating lease %s/%s: %s", self.namespace, self.name, err)
            return False
        except Exception as err:  # a lost connection must not kill the elector
            log.warning("error updating lease %s/%s: %s", self.namespace, self.name, err)
            return False

    async def _try_acquire_or_renew(self) -> bool:
        now = micro_time()
        lease = await self.kube.get("coordination.k8s.io/v1", "Lease", self.name, self.namespace)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": round(self.lease_duration),
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                created = await self.kube.create(body)
            except KubeApiError as err:
                if err.conflict:
                    return False
                raise
            self._observe(created.get("spec") or {})
            self._renewed()
            return True
        spec = dict(lease.get("spec") or {})
        self._observe(spec)
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            self._set_leader(False)
            return False
        if holder != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = round(self.lease_duration)
        spec["renewTime"] = now
        lease["spec"] = spec
        try:
            updated = await self.kube.replace(lease)
        except KubeApiError as err:
            if err.conflict:
                return False
            raise
        self._observe(updated.get("spec") or {})
        self._renewed()
        return True

    def _renewed(self) -> None:
        self._last_renew = time.monotonic()
        self._set_leader(True)

    async def release(self) -> None:
        """Give the Lease up so a standby does not wait for it to expire."""
        if not self.is_leader:
            return
        self._set_leader(False)
        try:
            lease = await self.kube.get("coordination.k8s.io/v1", "Lease", self.name, self.namespace)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            now = micro_time()
            lease["spec"] = {
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": (lease.get("spec") or {}).get("leaseTransitions", 0),
            }
            await self.kube.replace(lease)
            log.info("released lease %s/%s", self.namespace, self.name)
        except Exception as err:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, err)
