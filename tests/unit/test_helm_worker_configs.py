"""The Helm worker's configs: one per HelmRelease's options, the least recently used closed past the
cache's size, never one a call still holds."""

from __future__ import annotations

from typing import Any

from tide.controllers.helm.engine_worker import ConfigCache


class FakeConfig:
    def __init__(self, options: dict[str, Any]) -> None:
        self.name = options["kubeconfig"]
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_least_recently_used_idle_config_is_closed():
    made: list[FakeConfig] = []

    def make(options: dict[str, Any]) -> FakeConfig:
        made.append(FakeConfig(options))
        return made[-1]

    cache = ConfigCache(make, size=2)
    for name in ("a", "b", "a", "c"):  # a used again after b: b is the least recently used
        with cache.lease({"kubeconfig": name}) as cfg:
            assert cfg.name == name and not cfg.closed
    assert [(c.name, c.closed) for c in made] == [("a", False), ("b", True), ("c", False)]
    with cache.lease({"kubeconfig": "a"}) as again:
        assert again is made[0]  # kept, not made again


def test_a_config_a_call_holds_is_not_closed_under_it():
    cache = ConfigCache(FakeConfig, size=1)
    others: list[FakeConfig] = []
    with cache.lease({"kubeconfig": "long install"}) as held:
        for name in ("b", "c", "d"):
            with cache.lease({"kubeconfig": name}) as other:
                others.append(other)
        assert not held.closed  # the oldest, but in use: the idle ones go instead
        assert [c.closed for c in others] == [True, True, True]
    assert list(cache.entries) == ['{"kubeconfig": "long install"}']
