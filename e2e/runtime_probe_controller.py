"""A small controller for the runtime's e2e tests: reconciles Probe objects (runtime.tide.test/v1).

    python -m e2e.runtime_probe_controller [Flux controller flags]

spec.mode picks what a reconcile does: succeed, fail (ReconcileError), stall (StalledError) or crash
(an unexpected exception); spec.sleepSeconds makes it slow. The status records how often and by
which process it was reconciled, so tests can see coalescing, backoff, leadership and sharding.
Deleting a Probe creates the ConfigMap `<name>-finalized` (proof that finalize ran).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from tide.shared.api.meta import Duration, KubeObject, ObjectStatus, Spec, parse_duration
from tide.shared.runtime import (
    ReconcileContext,
    ReconcileError,
    Reconciler,
    Result,
    StalledError,
    controller_arg_parser,
    run_controller,
)

NAME = "runtime-probe-controller"
IDENTITY = f"{socket.gethostname()}-{os.getpid()}"


class ProbeSpec(Spec):
    interval: Duration
    retry_interval: Duration | None = None
    suspend: bool | None = None
    mode: Literal["succeed", "fail", "stall", "crash"] = "succeed"
    sleep_seconds: float | None = None
    requeue_after: Duration | None = None
    message: str | None = None


class ProbeStatus(ObjectStatus):
    reconcile_count: int | None = None
    reconciled_by: str | None = None
    attempt_times: list[float] | None = None
    last_generation: int | None = None


class Probe(KubeObject):
    group: ClassVar[str] = "runtime.tide.test"
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "Probe"
    plural: ClassVar[str] = "probes"
    singular: ClassVar[str] = "probe"
    short_names: ClassVar[tuple[str, ...]] = ()
    categories: ClassVar[tuple[str, ...]] = ()

    spec: ProbeSpec
    status: ProbeStatus = Field(default_factory=ProbeStatus)

    def retry_interval_seconds(self) -> float | None:
        """Only an explicit retryInterval (unlike Kustomization's default to interval), so the tests
        see the runtime's exponential backoff when it is unset."""
        return parse_duration(self.spec.retry_interval) if self.spec.retry_interval else None


def probe_crd() -> dict[str, Any]:
    """The Probe CRD, with a spec the API server does not validate (so the controller sees objects
    the model rejects, as Flux did before CVE-2022-39272's fix)."""
    group, plural = Probe.group, Probe.plural
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": Probe.kind,
                "listKind": "ProbeList",
                "plural": plural,
                "singular": Probe.singular,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": Probe.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


class ProbeReconciler(Reconciler[Probe]):
    model = Probe
    finalizer: str | None = "finalizers.fluxcd.io"

    async def reconcile(self, obj: Probe, ctx: ReconcileContext) -> Result:
        status = obj.status
        status.reconcile_count = (status.reconcile_count or 0) + 1
        status.reconciled_by = IDENTITY
        status.last_generation = obj.metadata.generation
        status.attempt_times = [*(status.attempt_times or [])[-19:], round(time.time(), 3)]
        if obj.spec.sleep_seconds:
            await ctx.progress(f"sleeping {obj.spec.sleep_seconds}s")
            await asyncio.sleep(obj.spec.sleep_seconds)
        message = obj.spec.message or "probe failed"
        if obj.spec.mode == "fail":
            raise ReconcileError("ProbeFailed", message)
        if obj.spec.mode == "stall":
            raise StalledError("ProbeStalled", message)
        if obj.spec.mode == "crash":
            raise RuntimeError(message)
        ctx.set_condition(
            "Ready", "True", "Succeeded", f"Probe reconciled at generation {obj.metadata.generation}"
        )
        ctx.event("Normal", "Reconciled", "probe reconciled", metadata={"revision": "probe"})
        if obj.spec.requeue_after:
            return Result(requeue_after=parse_duration(obj.spec.requeue_after))
        return Result()

    async def finalize(self, obj: Probe, ctx: ReconcileContext) -> None:
        await ctx.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{obj.name}-finalized", "namespace": obj.namespace},
                "data": {"by": IDENTITY},
            },
            field_manager=NAME,
        )


def main(argv: list[str] | None = None) -> None:
    args = controller_arg_parser(NAME, concurrent_default=4).parse_args(argv)
    run_controller(args, reconcilers=[ProbeReconciler()])


if __name__ == "__main__":
    main()
