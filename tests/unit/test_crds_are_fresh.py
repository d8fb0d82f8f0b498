"""The committed CRDs in charts/tide/crds are what `make crds` generates from shared/api."""

import subprocess
import sys
from pathlib import Path

from tide.shared.api.crdgen import main, stale_files, write

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crds_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tide.shared.api.crdgen", "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


def test_check_names_the_stale_files(tmp_path: Path, capsys: object) -> None:
    write(tmp_path)
    assert stale_files(tmp_path) == []
    stale = tmp_path / "source.toolkit.fluxcd.io_gitrepositories.yaml"
    stale.write_text(stale.read_text().replace("gitrepo", "gr"))
    (tmp_path / "leftover.yaml").write_text("{}\n")
    assert stale_files(tmp_path) == ["leftover.yaml", "source.toolkit.fluxcd.io_gitrepositories.yaml"]
    assert main(["--check", "--output", str(tmp_path)]) == 1
    assert main(["--output", str(tmp_path)]) == 0
    assert stale_files(tmp_path) == ["leftover.yaml"]
