"""Whether a failed build is worth retrying is its type: a missing or slow kustomize may work next
time, a bad path never will."""

from __future__ import annotations

from pathlib import Path

import pytest

from tide.shared.kustomize import build as kbuild
from tide.shared.kustomize.build import BuildError, BuildNotFinished, resolve_path, run_kustomize


async def test_timeout_is_retryable(tmp_path: Path) -> None:
    slow = tmp_path / "kustomize"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    with pytest.raises(BuildNotFinished, match="timed out"):
        await run_kustomize(tmp_path, tmp_path, str(slow), limit=0.2)


def test_missing_binary_is_retryable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TIDE_KUSTOMIZE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(kbuild, "__file__", str(tmp_path / "build.py"))
    with pytest.raises(BuildNotFinished, match="not found"):
        kbuild.find_kustomize()


def test_bad_path_is_not_retryable(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as info:
        resolve_path(tmp_path, "../elsewhere")
    assert not isinstance(info.value, BuildNotFinished)
