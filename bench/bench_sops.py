"""Native SOPS decryption of a 100-Secret overlay (age and PGP), and the sops CLI beside it.

The overlay: 100 Secret manifests, each encrypted by the real sops with its own data key
(encrypted_regex ^(data|stringData)$, 4 values each). Timed: the decrypt step as the
reconciler runs it: decrypt_generator_sources (MAC of every source manifest) then
decrypt_resources on the built objects (namespace added, as kustomize does).

Compared in the same run, like with like: the sops CLI can decrypt only one file per process, so it
runs `sops decrypt` on the same 100 files and `sops filestatus` on them (process start-up, reading and
parsing the file, no decryption); the difference is the CLI's decryption work, which is what the
in-process figure measures. Flux runs sops's Go code in-process: neither figure is Flux itself.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import BenchmarkFailed
from tide.controllers.kustomize.decrypt import Keyring, decrypt_generator_sources, decrypt_resources

ROOT = Path(__file__).resolve().parent.parent
SOPS = ROOT / ".tide" / "bin" / "sops"
KEYS = ROOT / "tests" / "fixtures" / "sops" / "keys"
COUNT = 100


def _secret(i: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"secret-{i:03d}", "labels": {"app": "bench"}},
            "type": "Opaque",
            "stringData": {
                "username": f"user-{i}",
                "password": f"password-{i}-" + "x" * 24,
                "url": f"postgres://db-{i}.example.com:5432/app",
            },
            "data": {"token": "dG9rZW4tdmFsdWUtZm9yLWJlbmNo"},
        },
        sort_keys=False,
    )


def _overlay(directory: Path, flag: str, key_id: str) -> None:
    directory.mkdir(parents=True)
    names = []
    for i in range(COUNT):
        plain = directory / f"plain-{i:03d}.yaml"
        plain.write_text(_secret(i))
        out = directory / f"secret-{i:03d}.yaml"
        with out.open("wb") as sink:
            subprocess.run(
                [str(SOPS), "encrypt", flag, key_id, "--encrypted-regex", "^(data|stringData)$", str(plain)],
                stdout=sink,
                check=True,
                env=os.environ | {"GNUPGHOME": os.environ.get("GNUPGHOME", "")},
            )
        plain.unlink()
        names.append(out.name)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({"namespace": "bench", "resources": names}))


def _built(directory: Path) -> list[dict[str, Any]]:
    objects = []
    for path in sorted(directory.glob("secret-*.yaml")):
        obj = yaml.safe_load(path.read_text())
        obj["metadata"]["namespace"] = "bench"
        objects.append(obj)
    return objects


def _time_native(directory: Path, key_file: str) -> float:
    objects = _built(directory)
    start = time.perf_counter()
    with Keyring.from_secret_data({key_file: (KEYS / key_file).read_bytes()}) as ring:
        decrypt_generator_sources(directory, directory, ring)
        out = decrypt_resources(objects, ring)
    elapsed = time.perf_counter() - start
    assert all("sops" not in o for o in out) and out[7]["stringData"]["username"] == "user-7"
    return elapsed


def _timed_cli(command: str, path: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(SOPS), command, str(path)], capture_output=True, check=True, env=env)
    return time.perf_counter() - start


def _cli_work(directory: Path, env: dict[str, str], runs: int) -> tuple[float, float]:
    """(decrypt, decrypt minus start-up) of the overlay by the CLI, one process per file: each file's
    `sops decrypt` and `sops filestatus` timed back to back (so load hits both alike), medians x COUNT."""
    decrypts, differences = [], []
    for _ in range(runs):
        for path in sorted(directory.glob("secret-*.yaml")):
            decrypt = _timed_cli("decrypt", path, env)
            decrypts.append(decrypt)
            differences.append(decrypt - _timed_cli("filestatus", path, env))
    return statistics.median(decrypts) * COUNT, max(statistics.median(differences), 0.0) * COUNT


def main() -> list[dict[str, str]]:
    if not SOPS.exists():
        raise BenchmarkFailed(f"{SOPS} is missing: run `tools/build.sh sops`")
    work = Path(tempfile.mkdtemp(prefix="tide-bench-sops-"))
    gnupg = work / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = os.environ | {"GNUPGHOME": str(gnupg), "SOPS_AGE_KEY_FILE": str(KEYS / "age.agekey")}
    old = os.environ.get("GNUPGHOME")
    try:
        os.environ["GNUPGHOME"] = str(gnupg)
        subprocess.run(["gpg", "--batch", "--import", str(KEYS / "pgp.asc")], capture_output=True, check=True)
        fingerprint = (KEYS / "pgp.fingerprint").read_text().strip()
        recipient = (KEYS / "age.recipient").read_text().strip()
        _overlay(work / "age", "--age", recipient)
        _overlay(work / "pgp", "--pgp", fingerprint)
        age_native = min(_time_native(work / "age", "age.agekey") for _ in range(3))
        pgp_native = _time_native(work / "pgp", "pgp.asc")
        age_cli, age_work = _cli_work(work / "age", env, 3)
        pgp_cli, pgp_work = _cli_work(work / "pgp", env, 1)
    finally:
        if old is None:
            os.environ.pop("GNUPGHOME", None)
        else:
            os.environ["GNUPGHOME"] = old
        subprocess.run(
            ["gpgconf", "--homedir", str(gnupg), "--kill", "all"], capture_output=True, check=False
        )
        shutil.rmtree(work, ignore_errors=True)
    compared = (
        "sops CLI decrypt minus its start-up: median over the files of `sops decrypt` minus "
        "`sops filestatus` (start, read, parse, no decryption) of the same file, x 100"
    )
    note = (
        f"{COUNT} Secrets, one data key each; MAC checked on sources, then built objects decrypted; "
        f"compared: {compared}"
    )
    return [
        {
            "benchmark": "sops decrypt 100-secret overlay (age), in-process",
            "value": f"{age_native * 1000:.0f} ms ({age_native * 1e6 / COUNT:.0f} µs/secret)",
            "same_run": f"sops CLI: {age_work * 1000:.0f} ms without start-up "
            f"({age_cli * 1000:.0f} ms in 100 processes)",
            "note": note + "; in-process best of 3, CLI 3 rounds",
        },
        {
            "benchmark": "sops decrypt 100-secret overlay (PGP), in-process",
            "value": f"{pgp_native * 1000:.0f} ms ({pgp_native * 1e3 / COUNT:.1f} ms/secret)",
            "same_run": f"sops CLI: {pgp_work * 1000:.0f} ms without start-up "
            f"({pgp_cli * 1000:.0f} ms in 100 processes)",
            "note": "PGP data keys through gpg in a throw-away GNUPGHOME (one gpg call per file, "
            f"both sides); compared: {compared}",
        },
    ]
