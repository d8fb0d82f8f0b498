"""Chart archives are hostile: every bad entry is refused before anything is written;
values files merge as Flux merges them; version metadata as Flux writes it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tide.controllers.source import helm_chart_build as build
from tide.controllers.source.helm_chart_build import ChartArchiveError, ChartLimits

CHART_YAML = b"apiVersion: v2\nname: app\nversion: 1.0.0\n"


def write_tgz(path: Path, entries: list[tuple[str, bytes | None, bytes]]) -> Path:
    """entries: (name, data or None, type); SYMTYPE/LNKTYPE use data as the link target."""
    with tarfile.open(path, mode="w:gz") as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = (data or b"").decode()
                tar.addfile(info)
            else:
                payload = data or b""
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


def chart(path: Path, *extra: tuple[str, bytes | None, bytes]) -> Path:
    return write_tgz(
        path,
        [
            ("app/Chart.yaml", CHART_YAML, tarfile.REGTYPE),
            ("app/values.yaml", b"a: 1\n", tarfile.REGTYPE),
            *extra,
        ],
    )


def test_a_plain_chart_passes(tmp_path: Path) -> None:
    assert build.check_archive(chart(tmp_path / "c.tgz"), ChartLimits()) == ("app", "1.0.0")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (("app/../../etc/passwd", b"x", tarfile.REGTYPE), "path traversal"),
        (("/etc/passwd", b"x", tarfile.REGTYPE), "absolute path"),
        (("app/templates/link.yaml", b"/etc/passwd", tarfile.SYMTYPE), "illegal link"),
        (("app/templates/inside.yaml", b"values.yaml", tarfile.SYMTYPE), "illegal link"),
        (("app/hard", b"app/values.yaml", tarfile.LNKTYPE), "illegal link"),
        (("app/fifo", None, tarfile.FIFOTYPE), "unsupported entry type"),
        (("other/file", b"x", tarfile.REGTYPE), "more than one top directory"),
    ],
)
def test_hostile_entries_are_refused(
    tmp_path: Path, entry: tuple[str, bytes | None, bytes], message: str
) -> None:
    with pytest.raises(ChartArchiveError, match=message):
        build.check_archive(chart(tmp_path / "c.tgz", entry), ChartLimits())


def test_size_and_count_limits(tmp_path: Path) -> None:
    big = chart(tmp_path / "big.tgz", ("app/big.bin", b"\0" * 2048, tarfile.REGTYPE))
    with pytest.raises(ChartArchiveError, match="over the maximum of 1024 bytes"):
        build.check_archive(big, ChartLimits(max_file_size=1024))
    with pytest.raises(ChartArchiveError, match="maximum extracted size of 1500 bytes"):
        build.check_archive(big, ChartLimits(max_size=1500))
    many = chart(tmp_path / "many.tgz", *[(f"app/f{i}", b"", tarfile.REGTYPE) for i in range(50)])
    with pytest.raises(ChartArchiveError, match="more than 20 entries"):
        build.check_archive(many, ChartLimits(max_entries=20))


def test_corrupt_and_incomplete_archives(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.tgz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 definitely not gzip")
    with pytest.raises(ChartArchiveError, match="corrupt chart archive"):
        build.check_archive(corrupt, ChartLimits())
    no_chart = write_tgz(tmp_path / "n.tgz", [("app/values.yaml", b"a: 1\n", tarfile.REGTYPE)])
    with pytest.raises(ChartArchiveError, match=r"no Chart\.yaml"):
        build.check_archive(no_chart, ChartLimits())


def test_values_files_merge_in_order(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("image: {repo: app, tag: '1'}\nlist: [1, 2]\n")
    (tmp_path / "prod.yaml").write_text("image: {tag: '2'}\nlist: [3]\nreplicas: 3\n")
    merged, used = build.merge_values_files(
        tmp_path, tmp_path, ["values.yaml", "missing.yaml", "prod.yaml"], ignore_missing=True
    )
    assert merged == {"image": {"repo": "app", "tag": "2"}, "list": [3], "replicas": 3}
    assert used == ["values.yaml", "prod.yaml"]
    with pytest.raises(build.ValuesFilesError, match=r"no values file found at path 'missing\.yaml'"):
        build.merge_values_files(tmp_path, tmp_path, ["missing.yaml"], ignore_missing=False)
    with pytest.raises(build.ValuesFilesError, match="relative"):
        build.merge_values_files(tmp_path, tmp_path, ["../x.yaml"], ignore_missing=True)


def test_version_metadata() -> None:
    assert build.with_metadata("1.0.0", None) == "1.0.0"
    assert build.with_metadata("1.0.0", "3") == "1.0.0+3"
    assert build.with_metadata("1.0.0+old", "abcdef012345.3") == "1.0.0+abcdef012345.3"
