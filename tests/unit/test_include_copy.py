"""spec.include copies into the checkout and nowhere else, whatever symlinks either side holds."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from tide.controllers.source.builder import IncludeCopy, IncludeCopyError, copy_includes


def _artifact(path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    """A tar.gz as the source controller stores it: files, then symlinks."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def _include(artifact: Path, from_path: str = ".", to_path: str = ".", name: str = "lib") -> IncludeCopy:
    return IncludeCopy(name, artifact, PurePosixPath(from_path), PurePosixPath(to_path))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    return d


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "checkout"
    d.mkdir()
    (d / "app.yaml").write_text("kind: ConfigMap\n")
    return d


def test_include_is_copied_to_its_path(tmp_path: Path, tree: Path) -> None:
    lib = _artifact(
        tmp_path / "lib.tar.gz", {"deploy/a.yaml": "a", "deploy/sub/b.yaml": "b"}, {"deploy/c": "a.yaml"}
    )
    copy_includes(tree, [_include(lib, "deploy", "vendor/lib")], 0)
    assert (tree / "vendor/lib/a.yaml").read_text() == "a"
    assert (tree / "vendor/lib/sub/b.yaml").read_text() == "b"
    assert (tree / "vendor/lib/c").resolve() == (tree / "vendor/lib/a.yaml").resolve()


def test_to_path_through_a_symlink_of_the_repository_is_refused(
    tmp_path: Path, tree: Path, outside: Path
) -> None:
    (tree / "escape").symlink_to(outside)
    lib = _artifact(tmp_path / "lib.tar.gz", {"x.yaml": "stolen"})
    with pytest.raises(IncludeCopyError, match="symlink 'escape'"):
        copy_includes(tree, [_include(lib, ".", "escape/sub")], 0)
    assert list(outside.iterdir()) == []


def test_include_never_writes_through_a_symlinked_directory_of_the_repository(
    tmp_path: Path, tree: Path, outside: Path
) -> None:
    (tree / "lib").mkdir()
    (tree / "lib" / "d").symlink_to(outside)
    lib = _artifact(tmp_path / "lib.tar.gz", {"d/x.yaml": "stolen"})
    with pytest.raises(IncludeCopyError, match="symlink 'lib/d'"):
        copy_includes(tree, [_include(lib, ".", "lib")], 0)
    assert list(outside.iterdir()) == []


def test_included_symlinked_directory_cannot_lead_a_later_include_out(tmp_path: Path, tree: Path) -> None:
    # `sub/d -> ..` stays inside its own artifact, but copied from `sub` to the checkout's root it
    # points at the checkout's parent; a second include would then write `d/pwned` beside the checkout.
    first = _artifact(tmp_path / "first.tar.gz", {"sub/ok.yaml": "ok"}, {"sub/d": ".."})
    second = _artifact(tmp_path / "second.tar.gz", {"d/pwned": "x"})
    with pytest.raises(IncludeCopyError, match="outside"):
        copy_includes(tree, [_include(first, "sub", "."), _include(second, ".", ".", "second")], 0)
    assert not (tmp_path / "pwned").exists()
