"""Hostile artifacts against the kustomize build, with the real kustomize (.tide/bin)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tide.controllers.kustomize.build import (
    SymlinkLoop,
    build,
    find_kustomize,
)

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _build(root: Path, spec: dict[str, Any] | None = None, **kwargs: Any) -> str:
    docs = asyncio.run(build(root, spec or {}, binary=find_kustomize(), limit=60, **kwargs))
    return "---\n".join(d.text or "" for d in docs)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "artifact"
    _write(d, {"app.yaml": CM.format(name="app")})
    return d


def test_symlink_loop_is_a_build_error(root: Path) -> None:
    (root / "a.yaml").symlink_to("b.yaml")
    (root / "b.yaml").symlink_to("a.yaml")
    with pytest.raises(SymlinkLoop, match=r"[ab]\.yaml"):
        _build(root)


def test_directory_linked_to_its_parent_is_not_walked_forever(root: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("..")
    assert "name: app" in _build(root)
