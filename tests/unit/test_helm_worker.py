"""Where Helm's calls run: the process started again as `helm-controller` (its concurrency read
first) or a worker process; their configs (one per HelmRelease's options, the least recently used
closed past the cache's size, never one a call still holds) and the SDK's clean pages given back."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tide.controllers.helm.engine_worker import ConfigCache
from tide.controllers.helm.sdk import HOST_HOME, clean_mappings, helm_host_home
from tide.controllers.helm.start import CONCURRENT_DEFAULT, concurrency


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


SMAPS = """\
55d0a0000000-55d0a0001000 r--p 00000000 08:01 11 /usr/bin/python3.11
Private_Dirty:         0 kB
7f0000000000-7f0001300000 r--p 00000000 08:01 42 /venv/helm_python/lib/libhelm_c.so.0.2.2
Size:              19456 kB
Shared_Dirty:          0 kB
Private_Clean:     10240 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
7f0001300000-7f0003000000 r-xp 01300000 08:01 42 /venv/helm_python/lib/libhelm_c.so.0.2.2
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0003000000-7f0003700000 r--p 03000000 08:01 42 /venv/helm_python/lib/libhelm_c.so.0.2.2
Private_Dirty:      5120 kB
Anonymous:          5120 kB
7f0003700000-7f0003800000 rw-p 03700000 08:01 42 /venv/helm_python/lib/libhelm_c.so.0.2.2
Private_Dirty:         0 kB
7f0003800000-7f0003900000 r--p 03800000 08:01 42 /venv/helm_python/lib/libhelm_c.so.0.2.2
Private_Dirty:         0 kB
Anonymous:             0 kB
"""


def test_the_sdks_clean_read_only_mappings_are_found():
    loader, text, rodata = (
        (0x7F0000000000, 0x7F0001300000),
        (0x7F0001300000, 0x7F0003000000),
        (0x7F0003800000, 0x7F0003900000),
    )
    # the relocated segment (dirty, anonymous copies) and the writable data are never dropped
    assert clean_mappings(SMAPS, "libhelm_c.so") == [loader, text, rodata]
    assert clean_mappings(SMAPS, "libother.so") == []
    shared = SMAPS.replace("Shared_Dirty:          0 kB", "Shared_Dirty:          4 kB")
    assert clean_mappings(shared, "libhelm_c.so") == [text, rodata]  # a page written after a fork


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], CONCURRENT_DEFAULT),
        (["--concurrent=10"], 10),
        (["--log-level=debug", "--concurrent", "7", "--watch-all-namespaces=false"], 7),
        (["--concurrent=many"], CONCURRENT_DEFAULT),  # the controller's own parser refuses it
        (["--concurrent=0"], 1),
    ],
)
def test_the_concurrency_is_read_before_the_controller_starts_again(argv, expected):
    assert concurrency(argv) == expected


@pytest.mark.parametrize(
    ("argv0", "home_set", "hosts"),
    [
        ("helm-controller", True, True),
        ("/usr/bin/python3", True, False),  # a child inherited the environment: not Helm's host
        ("helm-controller", False, False),
    ],
)
def test_helm_runs_in_threads_only_in_a_process_started_as_its_host(
    monkeypatch, tmp_path, argv0, home_set, hosts
):
    monkeypatch.setattr(sys, "orig_argv", [argv0, "-c", "..."])
    if home_set:
        monkeypatch.setenv(HOST_HOME, str(tmp_path))
    else:
        monkeypatch.delenv(HOST_HOME, raising=False)
    assert helm_host_home() == (tmp_path if hosts else None)
