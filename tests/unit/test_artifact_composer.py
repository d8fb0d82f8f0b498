"""ArtifactGenerator copy operations: Flux's cp-like semantics, strategies, and hostile input."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
import yaml

from tide.controllers.source.artifact_composer import (
    Budget,
    Copy,
    CopyError,
    Output,
    SourceTree,
    Staging,
    apply_copies,
    generate,
    match,
)
from tide.controllers.source.tarball import build_tarball

SOURCE = {
    "deploy/frontend/app.yaml": "kind: A\n",
    "deploy/frontend/sub/extra.yaml": "kind: B\n",
    "deploy/frontend/README.md": "docs\n",
    "deploy/backend/app.yaml": "kind: C\n",
    "configs/a.yaml": "a: 1\n",
    "configs/b.yaml": "b: 2\n",
    "configs/testdata/t.yaml": "t: 1\n",
    "values.yaml": "image:\n  tag: v1\n  pull: Always\nlist: [1, 2]\n",
    "values-prod.yaml": "image:\n  tag: v2\nlist: [3]\n",
}


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def compose(tmp_path: Path, *copies: Copy, files: dict[str, str] | None = None) -> dict[str, str]:
    src = tree(tmp_path / "src", SOURCE if files is None else files)
    out = tmp_path / "out"
    out.mkdir()
    apply_copies(copies, {"src": SourceTree("src", src)}, Staging(out, Budget(10_000, 100)), tmp_path)
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("from_", "to", "expected"),
    [
        ("@src/configs/a.yaml", "@artifact/apps/app.yaml", ["apps/app.yaml"]),
        ("@src/configs/a.yaml", "@artifact/apps/", ["apps/a.yaml"]),
        ("@src/configs/*.yaml", "@artifact/apps/", ["apps/configs/a.yaml", "apps/configs/b.yaml"]),
        (
            "@src/configs/",
            "@artifact/apps/",
            ["apps/configs/a.yaml", "apps/configs/b.yaml", "apps/configs/testdata/t.yaml"],
        ),
        ("@src/deploy/frontend/**", "@artifact/", ["README.md", "app.yaml", "sub/extra.yaml"]),
        ("@src/deploy/*/app.yaml", "@artifact/", ["deploy/backend/app.yaml", "deploy/frontend/app.yaml"]),
        ("@src/deploy/fr?ntend/app.yaml", "@artifact/x/", ["x/deploy/frontend/app.yaml"]),
        ("@src/configs/[a]*.yaml", "@artifact/", ["configs/a.yaml"]),
    ],
)
def test_copy_semantics_are_fluxs(tmp_path: Path, from_: str, to: str, expected: list[str]) -> None:
    assert sorted(compose(tmp_path, Copy(from_, to))) == sorted(expected)


def test_the_whole_source_and_excludes(tmp_path: Path) -> None:
    got = compose(
        tmp_path, Copy("@src/", "@artifact/", exclude=("*.md", "**/testdata/**", "deploy/backend/**"))
    )
    assert sorted(got) == sorted(
        ["deploy/frontend/app.yaml", "deploy/frontend/sub/extra.yaml", "configs/a.yaml", "configs/b.yaml",
         "values.yaml", "values-prod.yaml"]
    )  # fmt: skip
    got = compose(tmp_path / "2", Copy("@src/configs/**", "@artifact/", exclude=("testdata/**",)))
    assert sorted(got) == ["a.yaml", "b.yaml"]


def test_later_copies_overwrite_and_merge_merges_like_helm(tmp_path: Path) -> None:
    got = compose(
        tmp_path,
        Copy("@src/values.yaml", "@artifact/chart/values.yaml"),
        Copy("@src/values-prod.yaml", "@artifact/chart/values.yaml", strategy="Merge"),
    )
    assert yaml.safe_load(got["chart/values.yaml"]) == {"image": {"tag": "v2", "pull": "Always"}, "list": [3]}
    got = compose(
        tmp_path / "2",
        Copy("@src/values.yaml", "@artifact/v.yaml"),
        Copy("@src/values-prod.yaml", "@artifact/v.yaml"),
    )
    assert got["v.yaml"] == SOURCE["values-prod.yaml"]


def _tgz(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_extract_unpacks_tarballs_and_skips_other_files_of_a_glob(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "rel" / "v1").mkdir(parents=True)
    (src / "rel" / "v1" / "chart-1.0.0.tgz").write_bytes(_tgz({"chart/Chart.yaml": "name: chart\n"}))
    (src / "rel" / "notes.txt").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    apply_copies([Copy("@src/rel/**/*.tgz", "@artifact/", strategy="Extract")],
                 {"src": SourceTree("src", src)}, Staging(out, Budget(10_000, 100)), tmp_path)  # fmt: skip
    assert (out / "chart" / "Chart.yaml").read_text() == "name: chart\n"
    with pytest.raises(CopyError, match=r"needs a \.tar\.gz"):
        apply_copies([Copy("@src/rel/notes.txt", "@artifact/", strategy="Extract")],
                     {"src": SourceTree("src", src)}, Staging(out, Budget(10_000, 9)), tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    ("copy", "message"),
    [
        (Copy("@src/../etc/passwd", "@artifact/x"), "must not contain '..'"),
        (Copy("@src//etc/passwd", "@artifact/x"), "must be relative"),
        (Copy("@src/configs/a.yaml", "@artifact/../../x"), "must not contain '..'"),
        (Copy("@src/configs/a.yaml", "@elsewhere/x"), "must start with '@artifact/'"),
        (Copy("@other/configs/a.yaml", "@artifact/x"), "source alias 'other' not found"),
        (Copy("@src/missing.yaml", "@artifact/x"), "does not exist"),
        (Copy("@src/nothing/*.yaml", "@artifact/"), "no files match pattern"),
        (Copy("@src/configs/*.yaml", "@artifact/", exclude=("*.yaml",)), "were excluded"),
        (Copy("@src/configs/[a.yaml", "@artifact/"), "unterminated"),
        (Copy("@src/configs/", "@artifact/", strategy="Extract"), "does not take a directory"),
    ],
)
def test_bad_operations_are_refused_with_a_clear_message(tmp_path: Path, copy: Copy, message: str) -> None:
    with pytest.raises(CopyError, match=message.replace("(", r"\(").replace("[", r"\[")):
        compose(tmp_path, copy)


def test_a_symlink_leaving_the_source_is_refused(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"ok.yaml": "a: 1\n"})
    secret = tmp_path / "secret"
    secret.write_text("top secret")
    os.symlink(secret, src / "leak.yaml")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CopyError, match="symlink leaving the source"):
        apply_copies([Copy("@src/*.yaml", "@artifact/")], {"src": SourceTree("src", src)},
                     Staging(out, Budget(10_000, 100)), tmp_path)  # fmt: skip
    assert not (out / "leak.yaml").exists()


def test_size_and_file_count_are_bounded(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {f"f{i}.txt": "x" * 10 for i in range(20)})
    (tmp_path / "o1").mkdir()
    (tmp_path / "o2").mkdir()
    with pytest.raises(CopyError, match="limit of 5 entries"):
        apply_copies([Copy("@src/", "@artifact/")], {"src": SourceTree("src", src)},
                     Staging(tmp_path / "o1", Budget(0, 5)), tmp_path)  # fmt: skip
    with pytest.raises(CopyError, match="limit of 50 bytes"):
        apply_copies([Copy("@src/", "@artifact/")], {"src": SourceTree("src", src)},
                     Staging(tmp_path / "o2", Budget(50, 0)), tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    ("pattern", "path", "doublestar", "expected"),
    [
        ("a/*", "a/b", False, True),
        ("a/*", "a/b/c", False, False),
        ("a/**", "a/b/c", False, False),
        ("a/**", "a/b/c", True, True),
        ("**/*.tgz", "x.tgz", True, True),
        ("[^a]*", "b", False, True),
        ("[^a]*", "a", False, False),
    ],
)
def test_glob_matching(pattern: str, path: str, doublestar: bool, expected: bool) -> None:
    assert match(tuple(pattern.split("/")), tuple(path.split("/")), doublestar) is expected


def test_many_double_stars_match_in_linear_steps() -> None:
    """A hostile `**/**/…/**/x` against a deep path: dynamic programming, not backtracking."""
    pattern = ("**",) * 300 + ("x",)
    assert match(pattern, ("d",) * 200 + ("x",), True)
    assert not match(pattern, ("d",) * 200 + ("y",), True)
    assert not match(("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",), ("a" * 5000,), False)


def test_generate_is_deterministic_and_splits_one_source(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", SOURCE)
    archive = tmp_path / "src.tar.gz"
    build_tarball(src, archive)
    outputs = [
        Output("frontend", (Copy("@repo/deploy/frontend/**", "@artifact/"),), str(tmp_path / "f.tar.gz")),
        Output("backend", (Copy("@repo/deploy/backend/**", "@artifact/"),), str(tmp_path / "b.tar.gz")),
    ]
    first = generate({"repo": str(archive)}, outputs, str(tmp_path / "w1"), 10_000)
    again = generate({"repo": str(archive)}, outputs, str(tmp_path / "w2"), 10_000)
    assert [a.digest for a in first] == [a.digest for a in again]
    assert first[0].digest != first[1].digest
    assert (first[0].files, first[1].files) == (3, 1)
    with pytest.raises(CopyError, match=r"^backend build failed: copy from '@repo/nope/\*\*'"):
        generate({"repo": str(archive)},
                 [Output("backend", (Copy("@repo/nope/**", "@artifact/"),), str(tmp_path / "x.tar.gz"))],
                 str(tmp_path / "w3"), 10_000)  # fmt: skip
