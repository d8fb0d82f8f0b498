"""Artifacts are deterministic and never carry escaping symlinks."""

import os
import tarfile
from pathlib import Path

import pytest

from tide.controllers.source.sourceignore import matcher_for_tree
from tide.controllers.source.tarball import ArtifactTooLarge, build_tarball


def make_tree(root: Path) -> None:
    (root / "deploy" / "base").mkdir(parents=True)
    (root / "deploy" / "base" / "app.yaml").write_text("kind: ConfigMap\n")
    (root / "deploy" / "run.sh").write_text("#!/bin/sh\n")
    (root / "deploy" / "run.sh").chmod(0o755)
    (root / "README.md").write_text("hi\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "logo.png").write_bytes(b"\x89PNG")


def test_same_tree_same_digest(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    make_tree(a)
    make_tree(b)
    os.utime(b / "README.md", (1, 1))
    (b / "README.md").chmod(0o640)
    first = build_tarball(a, tmp_path / "a.tar.gz")
    second = build_tarball(b, tmp_path / "b.tar.gz")
    assert first.digest == second.digest
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    (b / "README.md").write_text("changed\n")
    assert build_tarball(b, tmp_path / "c.tar.gz").digest != first.digest


def test_entries_sorted_normalised_and_filtered(tmp_path: Path):
    root = tmp_path / "t"
    root.mkdir()
    make_tree(root)
    m = matcher_for_tree(root, None)
    build_tarball(root, tmp_path / "x.tar.gz", exclude=m.ignored)
    with tarfile.open(tmp_path / "x.tar.gz") as tar:
        members = tar.getmembers()
    names = [t.name for t in members]
    assert names == ["README.md", "deploy", "deploy/base", "deploy/base/app.yaml", "deploy/run.sh"]
    for t in members:
        assert (t.uid, t.gid, t.uname, t.gname, t.mtime) == (0, 0, "", "", 0)
    modes = {t.name: t.mode for t in members}
    assert modes["deploy"] == 0o750
    assert modes["README.md"] == 0o600
    assert modes["deploy/run.sh"] == 0o700


def test_symlinks_inside_kept_outside_dropped(tmp_path: Path):
    root = tmp_path / "t"
    (root / "sub").mkdir(parents=True)
    (root / "a.yaml").write_text("a\n")
    (tmp_path / "secret").write_text("s\n")
    os.symlink("../a.yaml", root / "sub" / "link.yaml")
    os.symlink("../secret", root / "escape")
    os.symlink("/etc/passwd", root / "absolute")
    os.symlink("sub", root / "dirlink")
    build_tarball(root, tmp_path / "x.tar.gz")
    with tarfile.open(tmp_path / "x.tar.gz") as tar:
        links = {t.name: t.linkname for t in tar.getmembers() if t.issym()}
    assert links == {"sub/link.yaml": "../a.yaml", "dirlink": "sub"}


def test_size_limit(tmp_path: Path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "big").write_bytes(b"x" * 2000)
    with pytest.raises(ArtifactTooLarge, match="exceeds the limit of 1000 bytes"):
        build_tarball(root, tmp_path / "x.tar.gz", max_size=1000)


def test_large_trees_span_several_gzip_members_and_stay_deterministic(tmp_path: Path):
    import random
    import subprocess

    rng = random.Random(1)
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        for i in range(3):
            (root / f"f{i}.bin").write_bytes(rng.randbytes(3 * 1024 * 1024) if name == "a" else b"")
    src = tmp_path / "a"
    first = build_tarball(src, tmp_path / "1.tar.gz")
    second = build_tarball(src, tmp_path / "2.tar.gz")
    assert first.digest == second.digest and first.size > 9 * 1024 * 1024
    with tarfile.open(tmp_path / "1.tar.gz") as tar:
        assert sorted(t.name for t in tar.getmembers()) == ["f0.bin", "f1.bin", "f2.bin"]
        assert tar.extractfile("f2.bin").read() == (src / "f2.bin").read_bytes()
    listed = subprocess.run(["tar", "-tzf", str(tmp_path / "1.tar.gz")], capture_output=True, text=True)
    assert listed.stdout.split() == ["f0.bin", "f1.bin", "f2.bin"]
    empty = build_tarball(tmp_path / "b", tmp_path / "3.tar.gz")
    with tarfile.open(tmp_path / "3.tar.gz") as tar:
        assert len(tar.getmembers()) == 3
    assert empty.content_size == 0
