"""gitignore semantics of .sourceignore / spec.ignore, as Flux evaluates them (per file)."""

from pathlib import Path

from tide.controllers.source.sourceignore import (
    Matcher,
    build_matcher,
    load_ignore_patterns,
    matcher_for_tree,
    read_patterns,
)


def ignored(m: Matcher, path: str) -> bool:
    return m.ignored(path.split("/"), False)


def test_defaults_apply_without_user_patterns():
    m = build_matcher([])
    for p in [
        ".git/config",
        ".gitignore",
        "logo.png",
        "a/b/pic.JPG.jpg",
        "release.tar.gz",
        ".github/workflows/ci.yaml",
        "deep/.sops.yaml",
        ".flux.yaml",
        "sub/.goreleaser.yml",
    ]:
        assert ignored(m, p), p
    for p in ["deploy/app.yaml", "kustomization.yaml", "README.md", "github/x.yaml"]:
        assert not ignored(m, p), p


def test_user_patterns_drop_defaults_but_keep_vcs():
    m = build_matcher(read_patterns("*.md\n"))
    assert ignored(m, "README.md")
    assert not ignored(m, "logo.png")
    assert not ignored(m, ".github/workflows/ci.yaml")
    assert ignored(m, ".git/HEAD")
    assert ignored(m, ".gitmodules")


def test_spec_example_exclude_all_then_include_deploy():
    m = build_matcher(
        read_patterns(
            "# exclude all\n/*\n# include deploy dir\n!/deploy\n/deploy/**/*.md\n/deploy/**/*.txt\n"
        )
    )
    assert ignored(m, "src/main.go")
    assert ignored(m, "README.md")
    assert not ignored(m, "deploy/app.yaml")
    assert not ignored(m, "deploy/base/app.yaml")
    assert ignored(m, "deploy/base/notes.md")
    assert ignored(m, "deploy/notes.txt")


def test_anchored_and_unanchored():
    m = build_matcher(read_patterns("/top.yaml\nany.yaml\ndir/file.yaml\n"))
    assert ignored(m, "top.yaml")
    assert not ignored(m, "sub/top.yaml")
    assert ignored(m, "sub/deeper/any.yaml")
    assert ignored(m, "dir/file.yaml")
    assert not ignored(m, "x/dir/file.yaml")


def test_dir_only_pattern_matches_files_inside_not_same_named_file():
    m = build_matcher(read_patterns("build/\n"))
    assert ignored(m, "build/out.yaml")
    assert ignored(m, "a/build/out.yaml")
    assert not ignored(m, "build")


def test_double_star_and_char_classes():
    m = build_matcher(read_patterns("**/secret-*.yaml\nlogs/**\nfile[0-9].txt\n!file5.txt\n"))
    assert ignored(m, "secret-a.yaml")
    assert ignored(m, "x/y/secret-b.yaml")
    assert ignored(m, "logs/a/b.log")
    assert ignored(m, "file1.txt")
    assert not ignored(m, "file5.txt")
    assert not ignored(m, "fileX.txt")


def test_sourceignore_files_are_scoped_to_their_directory(tmp_path: Path):
    (tmp_path / "apps" / "dev").mkdir(parents=True)
    (tmp_path / ".sourceignore").write_text("*.txt\n")
    (tmp_path / "apps" / ".sourceignore").write_text("# only below apps\n*.yaml\n!keep.yaml\n")
    pats = load_ignore_patterns(tmp_path)
    assert [p.domain for p in pats] == [(), ("apps",), ("apps",)]
    m = matcher_for_tree(tmp_path, None)
    assert ignored(m, "notes.txt")
    assert ignored(m, "apps/dev/x.yaml")
    assert not ignored(m, "apps/keep.yaml")
    assert not ignored(m, "root.yaml")
    assert not ignored(m, "logo.png")  # a .sourceignore drops the defaults


def test_spec_ignore_comes_last_and_wins(tmp_path: Path):
    (tmp_path / ".sourceignore").write_text("*.yaml\n")
    m = matcher_for_tree(tmp_path, "!important.yaml\n")
    assert ignored(m, "a.yaml")
    assert not ignored(m, "important.yaml")
