"""Per-object exponential backoff (Flux: 750 ms doubling to 15 min) and interval jitter."""

import random

from tide.shared.runtime.workqueue import ExponentialBackoff, WorkQueue, jittered


def test_backoff_doubles_from_750ms_to_15min() -> None:
    backoff: ExponentialBackoff[str] = ExponentialBackoff()
    delays = [backoff.when("a") for _ in range(12)]
    assert delays[:5] == [0.75, 1.5, 3.0, 6.0, 12.0]
    assert max(delays) <= 900
    for _ in range(100):
        assert backoff.when("a") == 900


def test_backoff_is_per_key_and_reset_by_forget() -> None:
    backoff: ExponentialBackoff[str] = ExponentialBackoff()
    backoff.when("a")
    backoff.when("a")
    assert backoff.when("b") == 0.75
    backoff.forget("a")
    assert backoff.when("a") == 0.75


def test_backoff_honours_min_and_max_retry_delay_flags() -> None:
    backoff: ExponentialBackoff[str] = ExponentialBackoff(base=2, cap=5)
    assert [backoff.when("a") for _ in range(4)] == [2, 4, 5, 5]


async def test_rate_limited_add_uses_the_backoff() -> None:
    queue: WorkQueue[str] = WorkQueue("t", ExponentialBackoff(base=10, cap=100))
    assert queue.add_rate_limited("a") == 10
    assert queue.add_rate_limited("a") == 20
    queue.forget("a")
    assert queue.backoff.failures("a") == 0


def test_jitter_stays_within_the_percentage() -> None:
    rng = random.Random(1)
    values = [jittered(600, 5, rng.random) for _ in range(2000)]
    assert min(values) >= 570 and max(values) <= 630
    assert max(values) - min(values) > 50, "spread over the whole band"


def test_jitter_zero_percent_is_the_interval() -> None:
    assert jittered(60, 0) == 60
    assert jittered(60, 100) == 60
    assert jittered(0, 5) == 0
