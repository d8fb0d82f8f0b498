"""Hostile tars and Git trees: oversized extended headers are refused before they are read, and
entry-count bombs (empty files cost nothing against the size cap) hit an entry limit."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from dulwich.objects import Blob, Tree
from dulwich.repo import MemoryRepo

from tide.controllers.source import builder, git, oci_layer
from tide.shared.artifact import (
    DEFAULT_MAX_ENTRIES,
    TarHeaderTooLarge,
    TooManyEntries,
    extract_tarball,
)

MiB = 1 << 20


def _header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def oversized_header_tar(path: Path, kind: bytes, size: int) -> Path:
    """One extended header block announcing `size` bytes of zeros (a few KB of gzip per MiB),
    then a small regular file."""
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(_header("././@LongLink" if kind != tarfile.XHDTYPE else "pax", kind, size))
        zeros = bytes(MiB)
        for _ in range(size // MiB):
            out.write(zeros)
        out.write(bytes(-size % 512 + size % MiB))
        out.write(_header("f.yaml", tarfile.REGTYPE, 0))
        out.write(bytes(1024))
    return path


def peak_memory(fn, *args) -> int:
    tracemalloc.start()
    try:
        fn(*args)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.XGLTYPE])
def test_oversized_extended_header_is_refused_before_it_is_read(tmp_path: Path, kind: bytes) -> None:
    archive = oversized_header_tar(tmp_path / "bomb.tar.gz", kind, 48 * MiB)

    def attack() -> None:
        with pytest.raises(TarHeaderTooLarge):
            extract_tarball(archive, tmp_path / "out")

    # Today's reader holds the whole 48 MiB header in memory (the issue measured 600-800 MiB
    # from 0.5 MiB of gzip); refused from the 512-byte block that announces it, it stays small.
    assert peak_memory(attack) < 8 * MiB
    assert not (tmp_path / "out").exists()


def test_oversized_header_in_an_oci_layer_is_refused(tmp_path: Path) -> None:
    blob = oversized_header_tar(tmp_path / "layer", tarfile.GNUTYPE_LONGNAME, 16 * MiB)
    with pytest.raises(oci_layer.LayerExtractError) as err:
        oci_layer.untar_layer(blob, tmp_path / "tree", 0, 0)
    assert isinstance(err.value.__cause__, TarHeaderTooLarge)
    assert not (tmp_path / "tree").exists()


def test_a_chain_of_extended_headers_is_bounded_in_total(tmp_path: Path) -> None:
    """Each header under the per-header limit, but tarfile holds the whole chain at once."""
    path = tmp_path / "chain.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(3):
            out.write(_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 512 * 1024))
            out.write(bytes(512 * 1024))
        out.write(_header("f.yaml", tarfile.REGTYPE, 0))
        out.write(bytes(1024))
    with pytest.raises(TarHeaderTooLarge):
        extract_tarball(path, tmp_path / "out")


def test_long_names_within_the_limit_still_extract(tmp_path: Path) -> None:
    name = "/".join(["n" * 100] * 3) + ".yaml"
    path = tmp_path / "ok.tar.gz"
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        with tarfile.open(path, "w:gz", format=fmt) as tar:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"x\n"))
        out = extract_tarball(path, tmp_path / f"out{fmt}")
        assert (out / name).read_bytes() == b"x\n"


def test_sparse_members_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "sparse.tar.gz"
    with gzip.open(path, "wb") as out:
        out.write(_header("s", tarfile.GNUTYPE_SPARSE, 0))
        out.write(bytes(1024))
    with pytest.raises(Exception) as err:
        extract_tarball(path, tmp_path / "out")
    assert "sparse" in str(err.value)


# -- entry counts --------------------------------------------------------------------------------


def empty_files_tar(path: Path, count: int) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for i in range(count):
            tar.addfile(tarfile.TarInfo(f"d{i % 10}/f{i}"))
    return path


def test_the_default_entry_limit_refuses_the_measured_bomb() -> None:
    # The attack in the issue: 60,000 empty files from 363 KiB of tar.
    assert DEFAULT_MAX_ENTRIES < 60_000


def test_empty_file_bomb_hits_the_entry_limit_and_leaves_nothing(tmp_path: Path) -> None:
    archive = empty_files_tar(tmp_path / "many.tar.gz", 500)
    with pytest.raises(TooManyEntries, match="maximum of 200 entries"):
        extract_tarball(archive, tmp_path / "out", max_entries=200)
    assert not (tmp_path / "out").exists()
    assert extract_tarball(archive, tmp_path / "ok", max_entries=500).is_dir()


def test_empty_file_bomb_in_an_oci_layer(tmp_path: Path) -> None:
    blob = empty_files_tar(tmp_path / "layer", 500)
    with pytest.raises(oci_layer.LayerExtractError) as err:
        oci_layer.untar_layer(blob, tmp_path / "tree", 0, 200)
    assert isinstance(err.value.__cause__, TooManyEntries)
    assert not (tmp_path / "tree").exists()


def fanout_repo(levels: int, fanout: int = 10) -> tuple[MemoryRepo, bytes]:
    """A tree of a few hundred bytes per level that names the level below `fanout` times:
    fanout**levels empty files."""
    repo = MemoryRepo()
    blob = Blob.from_string(b"")
    repo.object_store.add_object(blob)
    tree = Tree()
    for i in range(fanout):
        tree.add(f"f{i}".encode(), 0o100644, blob.id)
    repo.object_store.add_object(tree)
    for _ in range(levels - 1):
        parent = Tree()
        for i in range(fanout):
            parent.add(f"d{i}".encode(), 0o040000, tree.id)
        repo.object_store.add_object(parent)
        tree = parent
    return repo, tree.id


def test_git_tree_fanout_bomb_is_refused_before_files_are_written(tmp_path: Path) -> None:
    repo, root = fanout_repo(5)  # 10^5 files
    with pytest.raises(TooManyEntries, match="Git tree"):
        git.write_tree(repo, root, tmp_path / "tree", (), 1000)
    assert not any(p.is_file() for p in (tmp_path / "tree").rglob("*"))


def test_git_tree_fanout_bomb_is_refused_on_the_direct_archive_path(tmp_path: Path) -> None:
    repo, root = fanout_repo(5)
    with pytest.raises(TooManyEntries):
        builder._ignore_patterns(repo.object_store, root, 1000)


def test_git_trees_within_the_limit_are_written(tmp_path: Path) -> None:
    repo, root = fanout_repo(2)
    git.write_tree(repo, root, tmp_path / "tree", (), 110)
    assert len([p for p in (tmp_path / "tree").rglob("*") if p.is_file()]) == 100


def test_entry_limit_flags() -> None:
    from tide.controllers.kustomize.main import arg_parser
    from tide.controllers.source.main import build_parser

    assert build_parser().parse_args(["--artifact-max-entries", "7"]).artifact_max_entries == 7
    assert build_parser().parse_args([]).artifact_max_entries == DEFAULT_MAX_ENTRIES
    assert arg_parser().parse_args(["--artifact-max-entries", "0"]).artifact_max_entries == 0
