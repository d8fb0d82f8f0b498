"""Flux's reference precedence, revision strings and Masterminds-style semver ranges."""

import pytest

from tide.controllers.source.refs import (
    InvalidSemver,
    RefNotFound,
    choose,
    highest_matching_tag,
    parse_constraint,
    parse_version,
    ref_prefixes,
    revision,
)
from tide.shared.api.source import GitRepositoryRef as Ref

A, B, C, T = "a" * 40, "b" * 40, "c" * 40, "d" * 40
REFS = {
    b"HEAD": A,
    b"refs/heads/main": A,
    b"refs/heads/master": B,
    b"refs/tags/v1.0.0": T,  # annotated: tag object T peels to C
    b"refs/tags/v1.0.0^{}": C,
    b"refs/tags/v1.2.0": B,
    b"refs/tags/v2.0.0-rc.1": A,
    b"refs/tags/not-a-version": A,
    b"refs/pull/1/head": C,
}
REFS = {k: v.encode() for k, v in REFS.items()}


def test_default_is_master_branch():
    t = choose(None, REFS)
    assert (t.kind, t.ref, t.commit) == ("branch", "refs/heads/master", B)
    assert revision(t, B) == f"master@sha1:{B}"


def test_precedence_commit_name_semver_tag_branch():
    assert choose(Ref(branch="main", tag="v1.2.0"), REFS).kind == "tag"
    assert choose(Ref(tag="v1.2.0", semver="1.x"), REFS).kind == "semver"
    assert choose(Ref(semver="1.x", name="refs/pull/1/head"), REFS).kind == "name"
    assert choose(Ref(name="refs/pull/1/head", commit=C), REFS).kind == "commit"


def test_revision_formats():
    tag = choose(Ref(tag="v1.0.0"), REFS)
    assert (tag.want, tag.commit) == (T, C)
    assert revision(tag, C) == f"v1.0.0@sha1:{C}"
    name = choose(Ref(name="refs/pull/1/head"), REFS)
    assert revision(name, C) == f"refs/pull/1/head@sha1:{C}"
    assert revision(choose(Ref(commit=C), None), C) == f"sha1:{C}"
    assert revision(choose(Ref(branch="main", commit=C), None), C) == f"main@sha1:{C}"


def test_lightweight_tag_points_at_the_commit():
    t = choose(Ref(tag="v1.2.0"), REFS)
    assert t.want == B and t.commit == B


def test_missing_refs():
    with pytest.raises(RefNotFound, match="refs/heads/nope"):
        choose(Ref(branch="nope"), REFS)
    with pytest.raises(RefNotFound, match="refs/tags/v9"):
        choose(Ref(tag="v9"), REFS)
    with pytest.raises(RefNotFound, match=r"no match found for semver: >=3\.0\.0"):
        choose(Ref(semver=">=3.0.0"), REFS)
    with pytest.raises(RefNotFound, match="invalid commit"):
        choose(Ref(commit="abc"), REFS)


def test_semver_picks_highest_match():
    assert highest_matching_tag(REFS, "*") == "v1.2.0"
    assert highest_matching_tag(REFS, "~1.0") == "v1.0.0"
    assert highest_matching_tag(REFS, ">=1.0.0 <1.2.0") == "v1.0.0"
    assert highest_matching_tag(REFS, ">=2.0.0-0") == "v2.0.0-rc.1"
    assert highest_matching_tag(REFS, "<1.0.0 || 1.2.x") == "v1.2.0"


@pytest.mark.parametrize(
    ("constraint", "yes", "no"),
    [
        ("1.2.3", ["1.2.3"], ["1.2.4"]),
        ("1.2", ["1.2.0", "1.2.9"], ["1.3.0"]),
        ("1.x", ["1.0.0", "1.9.9"], ["2.0.0", "0.9.0"]),
        ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
        ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
        ("^1.2.3", ["1.2.3", "1.9.0"], ["2.0.0", "1.2.2"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4"]),
        (">1.2", ["1.3.0"], ["1.2.9"]),
        ("<=1.2", ["1.2.9"], ["1.3.0"]),
        ("!=1.2.3", ["1.2.4"], ["1.2.3"]),
        ("1.0 - 1.4.5", ["1.0.0", "1.4.5"], ["1.4.6"]),
        (">= 1.0, < 2", ["1.5.0"], ["2.0.0"]),
        (">=1.0.0", ["1.5.0"], ["1.6.0-beta.1"]),
    ],
)
def test_constraints(constraint, yes, no):
    check = parse_constraint(constraint)
    for v in yes:
        assert check(parse_version(v)), (constraint, v)
    for v in no:
        assert not check(parse_version(v)), (constraint, v)


def test_lenient_versions_and_bad_constraints():
    assert str(parse_version("v1.2")) == "1.2.0"
    assert parse_version("release-1") is None
    with pytest.raises(InvalidSemver):
        parse_constraint(">=abc")


def test_ref_prefixes_keep_listings_small():
    assert ref_prefixes(Ref(branch="dev")) == [b"refs/heads/dev"]
    assert ref_prefixes(Ref(semver="1.x")) == [b"refs/tags/"]
    assert ref_prefixes(Ref(commit=A)) == []
