"""Property-based tests for every parser that reads untrusted bytes: whatever the input, each
either succeeds or fails with its own error type (never another exception, never a write
outside its directory), and the glob engines agree with a brute-force reference.

Bounded: few examples, a per-example deadline; the file runs in seconds."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import os
import shutil
import tarfile
import tempfile
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tide.controllers.kustomize.sops.errors import DecryptionError
from tide.controllers.kustomize.sops.formats import Format, load
from tide.controllers.notification.receivers import RECEIVER_TYPES, Verdict, validate_request
from tide.controllers.source import oci, oci_layer, oci_refs
from tide.controllers.source.sourceignore import Matcher, read_patterns
from tide.shared import boundedjson
from tide.shared.artifact import ArtifactError, extract_tarball
from tide.shared.globmatch import compile_glob
from tide.shared.kustomize.substitute import SubstitutionError, substitute_text

BOUNDED = settings(
    max_examples=50,
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Each example writes and extracts a tarball twice.
BOUNDED_IO = settings(BOUNDED, max_examples=25)


# -- reference glob matcher (exponential in general, fine on the tiny inputs drawn here) ----------


def reference_match(glob: str, text: str) -> bool:
    """`*` any run, `?` any one character, everything else literal: memoised recursion."""

    @cache
    def at(i: int, j: int) -> bool:
        if i == len(glob):
            return j == len(text)
        if glob[i] == "*":
            return at(i + 1, j) or (j < len(text) and at(i, j + 1))
        return j < len(text) and (glob[i] == "?" or glob[i] == text[j]) and at(i + 1, j + 1)

    return at(0, 0)


globs = st.text(alphabet="ab*?", max_size=10)
texts = st.text(alphabet="abc", max_size=12)


@BOUNDED
@given(globs, texts)
def test_glob_full_match_agrees_with_the_reference(glob: str, text: str) -> None:
    assert bool(compile_glob(glob, classes=False).match(text)) == reference_match(glob, text)


@BOUNDED
@given(globs, texts, st.sampled_from(["#", "##", "%", "%%"]))
def test_substitution_trims_agree_with_the_reference(glob: str, value: str, op: str) -> None:
    n = len(value)
    if op.startswith("#"):
        cuts = [k for k in range(n + 1) if reference_match(glob, value[:k])]
        want = value[(max(cuts) if op == "##" else min(cuts)) :] if cuts else value
    else:
        starts = [k for k in range(n + 1) if reference_match(glob, value[k:])]
        want = value[: (min(starts) if op == "%%" else max(starts))] if starts else value
    assert substitute_text("${v" + op + glob + "}", {"v": value}) == want


@BOUNDED
@given(st.text(max_size=60), st.dictionaries(st.sampled_from(["v", "w", "_x"]), st.text(max_size=20)))
def test_substitution_of_any_text_returns_text_or_a_substitution_error(text: str, variables) -> None:
    try:
        out = substitute_text(text, variables, strict=bool(len(text) % 2))
    except SubstitutionError:
        return
    assert isinstance(out, str)


# -- .sourceignore ---------------------------------------------------------------------------------

ignore_lines = st.lists(st.text(alphabet="ab*?[]!^/\\ #.-", max_size=12), max_size=6)
paths = st.lists(st.text(alphabet="ab.-[]*", min_size=1, max_size=6), min_size=1, max_size=4)


@BOUNDED
@given(ignore_lines, paths, st.booleans())
def test_sourceignore_never_raises(lines: list[str], path: list[str], is_dir: bool) -> None:
    matcher = Matcher(read_patterns("\n".join(lines), ("a",)[: len(path) % 2]))
    assert matcher.ignored(path, is_dir) in (True, False)


# -- tar extraction --------------------------------------------------------------------------------

names = st.text(alphabet="ab./\\\x00-", min_size=1, max_size=12)
members = st.lists(
    st.tuples(names, st.sampled_from([b"0", b"5", b"2", b"1", b"L", b"x"]), st.text(max_size=8)), max_size=6
)


def _tar_bytes(entries: list[tuple[str, bytes, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            data = extra.encode()
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = extra
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    raw = bytearray(gzip.decompress(data))
    for pos, value in flips:
        if raw:
            raw[pos % len(raw)] = value
    return gzip.compress(bytes(raw))


def _files_outside(root: Path) -> list[str]:
    real = os.path.realpath(root)
    return [
        os.path.join(d, f)
        for d, dirs, files in os.walk(root)
        for f in files + dirs
        if not os.path.realpath(os.path.join(d, f)).startswith(real + os.sep)
        and not os.path.islink(os.path.join(d, f))
    ]


@BOUNDED_IO
@given(members, st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4))
def test_tar_extraction_fails_only_with_artifact_errors(entries, flips) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = root / "a.tar.gz"
        archive.write_bytes(_mutate(_tar_bytes(entries), flips))
        out = root / "sandbox" / "out"
        try:
            extract_tarball(archive, out, max_size=1 << 16, max_entries=50)
        except ArtifactError:
            assert not out.exists()
        else:
            assert _files_outside(out) == []
        # Nothing written next to the destination.
        assert sorted(p.name for p in (root / "sandbox").iterdir()) in ([], ["out"])
        layer_tree = root / "layer"
        try:
            oci_layer.untar_layer(archive, layer_tree, 1 << 16, 50)
        except oci_layer.LayerExtractError:
            assert not layer_tree.exists()
        shutil.rmtree(root / "sandbox", ignore_errors=True)


@BOUNDED_IO
@given(st.binary(max_size=600))
def test_random_bytes_are_not_an_artifact(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "a.tar.gz"
        archive.write_bytes(gzip.compress(data) if data[:1] == b"\x00" else data)
        try:
            extract_tarball(archive, Path(tmp) / "out")
        except ArtifactError:
            pass


# -- SOPS formats -------------------------------------------------------------------------------

yamlish = st.text(alphabet="ab:-[]{}&*!|>\"'#\n ,", max_size=80)


@BOUNDED
@given(st.one_of(st.binary(max_size=200), yamlish.map(str.encode)), st.sampled_from(list(Format)))
def test_sops_formats_fail_only_with_decryption_errors(data: bytes, fmt: Format) -> None:
    try:
        load(data, fmt)
    except DecryptionError:
        pass


# -- receiver payloads --------------------------------------------------------------------------

header_names = st.sampled_from(
    [
        "X-Hub-Signature-256",
        "X-Hub-Signature",
        "X-GitHub-Event",
        "X-Gitlab-Token",
        "X-Gitlab-Event",
        "X-Event-Key",
        "X-Signature",
        "Authorization",
        "Content-Type",
        "X-Nexus-Webhook-Signature",
        "Ce-Type",
    ]
)
header_values = st.one_of(
    st.text(max_size=30), st.sampled_from(["sha256=00", "sha1=", "push", "application/json", "Bearer x"])
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=10,
    ).map(lambda v: boundedjson.json.dumps(v).encode()),
)


@BOUNDED
@given(
    st.sampled_from(RECEIVER_TYPES),
    st.dictionaries(header_names, header_values, max_size=4),
    bodies,
    st.booleans(),
)
def test_receiver_validation_always_gives_a_verdict(kind: str, headers, body: bytes, sign: bool) -> None:
    if sign:  # authentic requests too, so parsing past the signature check is exercised
        digest = hmac.new(b"tok", body, hashlib.sha256).hexdigest()
        headers = {**headers, "X-Hub-Signature-256": "sha256=" + digest, "X-Signature": "sha256=" + digest}
        headers.setdefault("X-Gitlab-Token", "tok")
    verdict = validate_request(kind, "tok", headers, body, ["push"])
    assert isinstance(verdict, Verdict)
    assert 200 <= verdict.status < 600


# -- OCI manifests ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["layers", "mediaType", "annotations", "digest", "size"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@BOUNDED
@given(st.one_of(json_values.map(lambda v: boundedjson.json.dumps(v).encode()), st.binary(max_size=100)))
def test_manifests_parse_or_fail_with_registry_errors(body: bytes) -> None:
    try:
        media_type, doc = oci.parse_manifest(body, "application/vnd.oci.image.manifest.v1+json")
    except oci.RegistryError:
        return
    assert isinstance(media_type, str)
    try:
        layer = oci_refs.select_layer(doc, None)
    except oci_refs.LayerError:
        return
    assert isinstance(layer.get("digest"), str)
