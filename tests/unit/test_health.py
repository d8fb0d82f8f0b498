import asyncio
import time

import pytest

from tide.shared.inventory import ObjectRef
from tide.shared.kube.health import (
    HealthCheckCanceled,
    HealthCheckFailed,
    HealthCheckTimeout,
    HealthTarget,
    InvalidCELExpression,
    compile_exprs,
    object_status,
    wait_for_health,
)
from tide.shared.kube.kstatus import Status, StatusKind

EXPRS = compile_exprs(
    [
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "inProgress": "has(self.status.phase) && self.status.phase == 'Pending'",
            "failed": "self.status.phase == 'Failed'",
            "current": "self.status.phase == 'Ready'",
        }
    ]
)


def widget(phase: str | None) -> dict:
    obj: dict = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "n"},
    }
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def test_cel_order_in_progress_failed_current() -> None:
    assert object_status(widget("Pending"), EXPRS).status == StatusKind.IN_PROGRESS
    assert object_status(widget("Failed"), EXPRS).status == StatusKind.FAILED
    assert object_status(widget("Ready"), EXPRS).status == StatusKind.CURRENT
    # A field the object does not have yet: the evaluation fails, and Flux's status is Unknown
    # with the error (the wait goes on, its timeout names it).
    assert object_status(widget(None), EXPRS) == Status(
        StatusKind.UNKNOWN,
        "failed to evaluate the CEL expression 'self.status.phase == 'Failed'': no such key: status",
    )


def test_kind_optional_matches_by_api_version() -> None:
    exprs = compile_exprs([{"apiVersion": "example.com/v1", "current": "self.status.phase == 'Ready'"}])
    assert object_status(widget("Ready"), exprs).status == StatusKind.CURRENT


def test_invalid_expression_is_reported() -> None:
    with pytest.raises(InvalidCELExpression, match="current"):
        compile_exprs([{"apiVersion": "v1", "kind": "X", "current": "self.status =="}])


def test_other_kinds_use_kstatus() -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "generation": 2},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1},
    }
    assert object_status(dep, EXPRS).status == StatusKind.IN_PROGRESS
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert object_status(cm, EXPRS).status == StatusKind.CURRENT


TARGET = HealthTarget(ObjectRef("example.com", "Widget", "n", "w"), "example.com/v1")


async def test_wait_returns_when_current() -> None:
    states = ["Pending", "Pending", "Ready"]
    seen: list[str] = []

    async def get(_: HealthTarget) -> dict:
        seen.append(states[len(seen)])
        return widget(seen[-1])

    await wait_for_health([TARGET], get, EXPRS, limit=5, poll=0)
    assert seen == states  # polled until Current, not returned early


async def test_wait_fails_fast_and_names_the_object() -> None:
    async def get(_: HealthTarget) -> dict:
        return widget("Failed")

    with pytest.raises(RuntimeError, match="Widget/n/w status: 'Failed'"):
        await wait_for_health([TARGET], get, EXPRS, limit=5, poll=0)


async def test_wait_times_out_with_pending_list() -> None:
    async def get(_: HealthTarget) -> dict:
        return widget("Pending")

    with pytest.raises(TimeoutError, match=r"timeout waiting for: \[Widget/n/w status: 'InProgress'\]"):
        await wait_for_health([TARGET], get, EXPRS, limit=0.05, poll=0.01)


async def test_wait_is_canceled_by_new_revision() -> None:
    async def get(_: HealthTarget) -> dict:
        return widget("Pending")

    with pytest.raises(HealthCheckCanceled, match="GitRepository/apps/repo"):
        await wait_for_health(
            [TARGET], get, EXPRS, limit=5, poll=0, canceled=lambda: "GitRepository/apps/repo"
        )


async def test_a_change_ends_the_wait_between_looks() -> None:
    """The watch cache's change event: the status is read again at once, not at the next poll."""
    changed = asyncio.Event()
    states = ["Pending", "Ready"]
    seen: list[str] = []

    async def get(_: HealthTarget) -> dict:
        seen.append(states[len(seen)])
        if len(seen) == 1:
            asyncio.get_running_loop().call_later(0.05, changed.set)
        return widget(seen[-1])

    started = time.monotonic()
    await wait_for_health([TARGET], get, EXPRS, limit=30, poll=10, changed=changed)
    assert seen == states
    assert time.monotonic() - started < 5  # woken by the change, not the 10 s poll


async def test_stale_cached_generation_is_not_trusted() -> None:
    target = HealthTarget(ObjectRef("", "ConfigMap", "n", "c"), "v1", min_generation=3)
    generations = [1, 3]
    seen: list[int] = []

    async def get(_: HealthTarget) -> dict:
        seen.append(generations[len(seen)])
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "generation": seen[-1]}}

    await wait_for_health([target], get, [], limit=5, poll=0)
    assert seen == generations  # the stale generation 1 was read and not trusted


def test_expressions_read_the_objects_fields_as_flux_binds_them() -> None:
    """Flux's expressions name top-level fields (`status.phase`); `self.` works as well."""
    exprs = compile_exprs(
        [
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "failed": "status.phase == 'Failed'",
                "current": "status.phase == 'Ready' && metadata.name == 'w'",
            }
        ]
    )
    assert object_status(widget("Ready"), exprs).status == StatusKind.CURRENT
    assert object_status(widget("Failed"), exprs).status == StatusKind.FAILED
    assert object_status(widget(None), exprs) == Status(  # no status yet
        StatusKind.UNKNOWN,
        "failed to evaluate the CEL expression 'status.phase == 'Failed'': no such attribute(s): status",
    )


@pytest.mark.parametrize(
    ("generation", "observed", "expected"),
    [(2, 1, StatusKind.IN_PROGRESS), (2, 2, StatusKind.CURRENT), (None, 1, StatusKind.CURRENT)],
)
def test_a_status_behind_the_generation_is_in_progress(generation, observed, expected) -> None:
    obj = widget("Ready")
    obj["status"]["observedGeneration"] = observed
    if generation is not None:
        obj["metadata"]["generation"] = generation
    assert object_status(obj, EXPRS).status == expected


def test_an_entry_naming_the_kind_wins_over_a_group_entry_in_any_version() -> None:
    exprs = compile_exprs(
        [
            {"apiVersion": "example.com/v1", "current": "false"},
            {"apiVersion": "example.com/v2", "kind": "Widget", "current": "status.phase == 'Ready'"},
        ]
    )
    assert object_status(widget("Ready"), exprs).status == StatusKind.CURRENT
    gadget = {**widget("Ready"), "kind": "Gadget"}
    assert object_status(gadget, exprs).status == StatusKind.IN_PROGRESS  # the group entry
    other = {**widget("Ready"), "apiVersion": "other.com/v1"}
    assert object_status(other, exprs).status == StatusKind.CURRENT  # kstatus: no conditions


async def test_failed_and_timeout_are_typed_with_their_lists() -> None:
    async def failed(_: HealthTarget) -> dict:
        return widget("Failed")

    with pytest.raises(HealthCheckFailed) as failure:
        await wait_for_health([TARGET], failed, EXPRS, limit=5, poll=0)
    assert failure.value.failed == ["Widget/n/w status: 'Failed': failed (healthCheckExprs)"]

    async def missing(_: HealthTarget) -> None:
        return None

    with pytest.raises(HealthCheckTimeout) as timeout:
        await wait_for_health([TARGET], missing, EXPRS, limit=0, poll=0)
    assert timeout.value.pending == ["Widget/n/w status: 'NotFound'"]


async def test_a_job_with_a_ttl_is_done_once_gone() -> None:
    job = HealthTarget(ObjectRef("batch", "Job", "n", "migrate"), "batch/v1", gone_is_done=True)

    async def gone(_: HealthTarget) -> None:
        return None

    await wait_for_health([job], gone, [], limit=0, poll=0)


COMPLETE = {"type": "Complete", "status": "True"}
FAILED = {"type": "Failed", "status": "True"}


@pytest.mark.parametrize(
    ("spec", "status", "for_jobs", "started_only"),
    [
        ({}, {}, StatusKind.IN_PROGRESS, StatusKind.IN_PROGRESS),  # not started
        ({}, {"startTime": "2026-11-30T10:00:00Z", "active": 1}, StatusKind.IN_PROGRESS, StatusKind.CURRENT),
        ({}, {"conditions": [COMPLETE]}, StatusKind.CURRENT, StatusKind.CURRENT),
        ({}, {"conditions": [FAILED]}, StatusKind.FAILED, StatusKind.FAILED),
        ({"suspend": True}, {}, StatusKind.CURRENT, StatusKind.IN_PROGRESS),
    ],
)
def test_a_wait_for_jobs_waits_for_completion(spec, status, for_jobs, started_only) -> None:
    """Helm's WaitWithJobs (Flux's Job reader) against kstatus's started-is-current."""
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": spec, "status": status}
    assert object_status(job, [], wait_for_jobs=True).status == for_jobs
    assert object_status(job, [], wait_for_jobs=False).status == started_only


def test_an_expression_too_long_to_be_parsed_cheaply_is_refused() -> None:
    long = " || ".join(f"self.status.phase == 'p{i}'" for i in range(1000))
    with pytest.raises(
        InvalidCELExpression, match=r"Widget.example.com/v1 current expression is \d+ characters"
    ):
        compile_exprs([{"apiVersion": "example.com/v1", "kind": "Widget", "current": long}])
    deep = "(" * 8000 + "true" + ")" * 8000  # within the limit: parsed, or refused as invalid, never a crash
    try:
        compile_exprs([{"apiVersion": "example.com/v1", "kind": "Widget", "current": deep}])
    except InvalidCELExpression:
        pass
