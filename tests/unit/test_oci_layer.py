"""An OCI layer becomes an artifact: symlinks skipped (as Flux's untar does), no escapes, ignore
rules and the deterministic archive applied."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tide.controllers.source import oci_layer
from tide.controllers.source.tarball import ArtifactTooLarge


def layer(path: Path, entries: list[tuple[str, bytes | str | None]]) -> Path:
    """entries: (name, bytes) files, (name, "->target") symlinks, (name, None) directories."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content[2:]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def test_extract_skips_symlinks_and_applies_ignore(tmp_path: Path) -> None:
    blob = layer(tmp_path / "l.tgz", [
        ("deploy", None), ("deploy/a.yaml", b"a: 1\n"), ("deploy/link.yaml", "->a.yaml"),
        ("docs/readme.md", b"# hi\n"), ("logo.png", b"png"),
    ])  # fmt: skip
    out = tmp_path / "artifact.tar.gz"
    archive = oci_layer.extract_and_archive(blob, tmp_path / "tree", "docs/\n", out, 0, 0)
    with tarfile.open(out) as tar:
        names = sorted(m.name for m in tar if m.isfile() or m.issym())
    assert names == ["deploy/a.yaml", "logo.png"]  # spec.ignore replaces the default excludes
    assert archive.files == 2
    again = oci_layer.extract_and_archive(
        blob, tmp_path / "tree2", "docs/\n", tmp_path / "again.tar.gz", 0, 0
    )
    assert again.digest == archive.digest


@pytest.mark.parametrize("name", ["../evil.yaml", "/etc/evil.yaml"])
def test_extract_rejects_escapes(tmp_path: Path, name: str) -> None:
    blob = layer(tmp_path / "l.tgz", [(name, b"x")])
    with pytest.raises(oci_layer.LayerExtractError, match="failed to extract layer contents"):
        oci_layer.untar_layer(blob, tmp_path / "tree", 0, 0)


def test_extract_size_cap_and_garbage(tmp_path: Path) -> None:
    blob = layer(tmp_path / "l.tgz", [("big", b"x" * 100)])
    with pytest.raises(ArtifactTooLarge):
        oci_layer.untar_layer(blob, tmp_path / "tree", 50, 0)
    (tmp_path / "junk").write_bytes(b"not a tarball")
    with pytest.raises(oci_layer.LayerExtractError):
        oci_layer.untar_layer(tmp_path / "junk", tmp_path / "tree2", 0, 0)
