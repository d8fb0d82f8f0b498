"""Hostile artifacts against the kustomize build, with the real kustomize (.tide/bin): nothing outside the
artifact gets into a build, an artifact's git config never runs, nothing is fetched with remote bases
off, memory is bounded, plugins stay disabled, symlink loops are build errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tide.shared.kustomize.build import (
    BuildError,
    BuildLimitExceeded,
    ReferenceRefused,
    RemoteBasesDisabled,
    SymlinkLoop,
    _failure,
    build,
    check_references,
    find_kustomize,
    is_fetched,
    limited,
    run_kustomize,
)

SECRET = "OUTSIDE-SECRET"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _build(root: Path, spec: dict[str, Any] | None = None, **kwargs: Any) -> str:
    docs = asyncio.run(build(root, spec or {}, binary=find_kustomize(), limit=60, **kwargs))
    return "---\n".join(d.text or "" for d in docs)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """What an attacker wants: a file beside the artifact (think /etc/passwd or a service-account token),
    and a patch that would copy it in."""
    d = tmp_path / "outside"
    _write(
        d,
        {
            "token": f"TOKEN={SECRET}\n",
            "patch.yaml": CM.format(name="app").replace("k: v", f"stolen: {SECRET}"),
        },
    )
    return d


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "artifact"
    _write(d, {"app.yaml": CM.format(name="app")})
    return d


def _generator(kind: str, field: str, path: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "builtin", "kind": kind, "metadata": {"name": "leak"}, field: [path]}
    )


def _hostile_kustomizations(outside: Path) -> dict[str, dict[str, str]]:
    token = str(outside / "token")
    return {
        "configmap-generator-file-absolute": {
            "kustomization.yaml": "resources: [app.yaml]\ngenerators: [gen.yaml]\n",
            "gen.yaml": _generator("ConfigMapGenerator", "files", token),
        },
        "configmap-generator-file-dotdot": {
            "kustomization.yaml": "resources: [app.yaml]\ngenerators: [gen.yaml]\n",
            "gen.yaml": _generator("ConfigMapGenerator", "files", "../outside/token"),
        },
        "secret-generator-envs-absolute": {
            "kustomization.yaml": "resources: [app.yaml]\ngenerators: [gen.yaml]\n",
            "gen.yaml": _generator("SecretGenerator", "envs", token),
        },
        "secret-generator-inline-document": {
            "kustomization.yaml": yaml.safe_dump(
                {"resources": ["app.yaml"], "generators": [_generator("SecretGenerator", "files", token)]}
            ),
        },
        "patch-transformer-absolute-path": {
            "kustomization.yaml": "resources: [app.yaml]\ntransformers: [patch.yaml]\n",
            "patch.yaml": yaml.safe_dump(
                {
                    "apiVersion": "builtin",
                    "kind": "PatchTransformer",
                    "metadata": {"name": "p"},
                    "path": str(outside / "patch.yaml"),
                    "target": {"kind": "ConfigMap"},
                }
            ),
        },
        "generator-config-built-by-a-kustomization": {
            "kustomization.yaml": "resources: [app.yaml]\ngenerators: [gen]\n",
            "gen/kustomization.yaml": "resources: [gen.yaml]\n",
            "gen/gen.yaml": _generator("ConfigMapGenerator", "files", token),
        },
    }


@pytest.mark.parametrize("case", sorted(_hostile_kustomizations(Path("/x"))))
def test_generators_and_transformers_cannot_read_outside_the_artifact(
    case: str, root: Path, outside: Path
) -> None:
    _write(root, _hostile_kustomizations(outside)[case])
    with pytest.raises(ReferenceRefused) as err:
        _build(root)
    assert "outside" in str(err.value)
    assert (
        str(outside / "token") in str(err.value)
        or "../outside/token" in str(err.value)
        or (str(outside / "patch.yaml") in str(err.value))
    )


def test_files_elsewhere_in_the_artifact_still_build(root: Path) -> None:
    """Flux lets a kustomization name any file of the artifact, not only those below it."""
    _write(
        root,
        {
            "common/cm.yaml": CM.format(name="common"),
            "common/data.txt": "shared data\n",
            "common/patch.yaml": CM.format(name="common").replace("k: v", "p: patched"),
            "base/kustomization.yaml": "resources: [../common/cm.yaml]\n",
            "apps/overlay/kustomization.yaml": yaml.safe_dump(
                {
                    "resources": ["../../base"],
                    "patches": [{"path": "../../common/patch.yaml"}],
                    "configMapGenerator": [{"name": "gen", "files": ["../../common/data.txt"]}],
                }
            ),
        },
    )
    out = _build(root, {"path": "./apps/overlay"})
    objects = {o["metadata"]["name"].split("-")[0]: o for o in yaml.safe_load_all(out)}
    assert objects["common"]["data"] == {"k": "v", "p": "patched"}
    assert objects["gen"]["data"] == {"data.txt": "shared data\n"}


def _git_repo(path: Path) -> None:
    _write(path, {"kustomization.yaml": "resources: [cm.yaml]\n", "cm.yaml": CM.format(name="remote")})
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "."],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"],
    ):
        subprocess.run(argv, cwd=path, env=env, check=True)


def _git_config_attack(root: Path, marker: Path) -> None:
    """An artifact that configures git through HOME and XDG_CONFIG_HOME: hooks, fsmonitor and the
    upload-pack hook (honoured from global config) each create the marker."""
    hook = f"#!/bin/sh\ntouch {marker}\n"
    _write(root, {"hooks/post-checkout": hook, "hooks/reference-transaction": hook})
    for name in ("post-checkout", "reference-transaction"):
        (root / "hooks" / name).chmod(0o755)
    config = (
        f'[core]\n\thooksPath = {root / "hooks"}\n\tfsmonitor = "touch {marker}; false"\n'
        f'[uploadpack]\n\tpackObjectsHook = "touch {marker}; false"\n'
    )
    _write(root, {".gitconfig": config, ".config/git/config": config, "git/config": config})


@pytest.mark.parametrize("remote_bases", [True, False])
def test_git_config_in_the_artifact_never_runs(tmp_path: Path, root: Path, remote_bases: bool) -> None:
    _git_repo(tmp_path / "repo")
    marker = tmp_path / "pwned"
    _git_config_attack(root, marker)
    # The reference check refuses file:// before kustomize runs: attack kustomize's run directly.
    _write(root, {"kustomization.yaml": f"resources:\n- file://{tmp_path / 'repo'}\n"})
    with pytest.raises(BuildError) as err:
        asyncio.run(run_kustomize(root, root, find_kustomize(), 60, remote_bases=remote_bases))
    assert not marker.exists()
    if not remote_bases:
        assert "git" in str(err.value)  # no git to run at all


def test_file_bases_are_refused_even_with_remote_bases_on(root: Path) -> None:
    for entry in ("file:///srv/repo", "FILE:///srv/repo", "git::file:///srv/repo"):
        _write(root, {"kustomization.yaml": f"resources:\n- {entry}\n"})
        with pytest.raises(ReferenceRefused, match="file://"):
            check_references(root, root, no_remote_bases=False)


def test_what_kustomize_takes_as_local_after_all_is_confined(root: Path, outside: Path) -> None:
    # `deploy@x/..` reads like scp-style but, where the path exists, kustomize loads it from disk
    (root / "deploy@x").mkdir()
    _write(outside, {"kustomization.yaml": "resources: [patch.yaml]\n"})
    _write(root, {"kustomization.yaml": "resources:\n- deploy@x/../../outside\n"})
    with pytest.raises(ReferenceRefused, match="outside the source artifact root"):
        check_references(root, root, no_remote_bases=False)


FETCHED = [
    "https://github.com/org/repo//deploy?ref=v1",
    "HTTPS://github.com/org/repo",
    "Http://example.com/cm.yaml",
    "git::https://example.com/org/repo",
    "GIT::HTTPS://example.com/org/repo",
    "ssh://git@example.com/org/repo",
    "SSH://git@example.com/org/repo",
    "git@example.com:org/repo",
    "deploy@example.com:org/repo",
    "github.com/org/repo/deploy?ref=v1",
    "GitHub.com/org/repo",
    "gh:org/repo",
    "s3::https://bucket/key",
]


@pytest.mark.parametrize("entry", FETCHED)
def test_every_fetched_reference_is_refused_with_remote_bases_off(root: Path, entry: str) -> None:
    assert is_fetched(entry)
    _write(root, {"kustomization.yaml": yaml.safe_dump({"resources": [entry]})})
    check_references(root, root, no_remote_bases=False)
    with pytest.raises(RemoteBasesDisabled, match="remote bases are disabled"):
        check_references(root, root, no_remote_bases=True)
    _write(root, {"kustomization.yaml": yaml.safe_dump({"patches": [{"path": entry}]})})
    with pytest.raises(RemoteBasesDisabled, match="remote bases are disabled"):
        check_references(root, root, no_remote_bases=True)


@pytest.mark.parametrize("entry", ["base", "./base", "../artifact/base", "my.app/base", "base/cm.yaml"])
def test_local_paths_are_not_fetched(entry: str) -> None:
    assert not is_fetched(entry)


ALIAS_BOMB = Path(__file__).resolve().parent.parent / "fixtures" / "hostile" / "alias-bomb.yaml"


def test_alias_bomb_is_stopped_by_the_memory_limit(root: Path) -> None:
    _write(root, {"kustomization.yaml": "resources: [bomb.yaml]\n", "bomb.yaml": ALIAS_BOMB.read_text()})
    with pytest.raises(BuildLimitExceeded, match="memory limit of 256 MiB"):
        _build(root, memory_limit=256 << 20)
    # and the next build works
    (root / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    assert "name: app" in _build(root, memory_limit=256 << 20)


def test_kustomize_runs_under_memory_and_cpu_limits() -> None:
    probe = "import resource as r; print(r.getrlimit(r.RLIMIT_DATA), r.getrlimit(r.RLIMIT_CPU))"
    out = subprocess.run(
        limited([sys.executable, "-c", probe], 512 << 20, 61),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == [f"({512 << 20},", f"{512 << 20})", "(61,", "66)"]


def test_symlink_loop_is_a_build_error(root: Path) -> None:
    (root / "a.yaml").symlink_to("b.yaml")
    (root / "b.yaml").symlink_to("a.yaml")
    with pytest.raises(SymlinkLoop, match=r"[ab]\.yaml"):
        _build(root)


def test_directory_linked_to_its_parent_is_not_walked_forever(root: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("..")
    assert "name: app" in _build(root)


PLUGINS = {
    "helm": {
        "kustomization.yaml": yaml.safe_dump(
            {"helmCharts": [{"name": "chart", "repo": "https://charts.example.com", "version": "1.0.0"}]}
        ),
    },
    "exec-krm-function": {
        "kustomization.yaml": "resources: [app.yaml]\ntransformers: [fn.yaml]\n",
        "fn.yaml": "apiVersion: example.com/v1\nkind: Fn\nmetadata:\n  name: fn\n  annotations:\n"
        "    config.kubernetes.io/function: |\n      exec:\n        path: ./plugin.sh\n",
    },
    "container-krm-function": {
        "kustomization.yaml": "resources: [app.yaml]\ngenerators: [fn.yaml]\n",
        "fn.yaml": "apiVersion: example.com/v1\nkind: Fn\nmetadata:\n  name: fn\n  annotations:\n"
        "    config.kubernetes.io/function: |\n      container:\n        image: example.com/fn:1\n",
    },
    "legacy-exec-plugin": {
        "kustomization.yaml": "resources: [app.yaml]\ntransformers: [fn.yaml]\n",
        "fn.yaml": "apiVersion: example.com/v1\nkind: Fn\nmetadata:\n  name: fn\n",
        ".config/kustomize/plugin/example.com/v1/fn/Fn": "#!/bin/sh\ntouch {marker}\ncat\n",
        "kustomize/plugin/example.com/v1/fn/Fn": "#!/bin/sh\ntouch {marker}\ncat\n",
    },
}


@pytest.mark.parametrize("case", sorted(PLUGINS))
def test_plugins_stay_disabled(case: str, tmp_path: Path, root: Path) -> None:
    marker = tmp_path / "ran"
    files = {name: text.replace("{marker}", str(marker)) for name, text in PLUGINS[case].items()}
    files["plugin.sh"] = f"#!/bin/sh\ntouch {marker}\ncat\n"
    _write(root, files)
    for path in root.rglob("*"):
        if path.is_file() and path.read_text().startswith("#!"):
            path.chmod(0o755)
    with pytest.raises(BuildError, match=r"external plugins disabled|must specify --enable-helm"):
        _build(root)
    assert not marker.exists()


# What kustomize printed, now and then, when the alias bomb met its memory limit: the Go runtime's
# garbage collector faulted instead of reporting "out of memory".
GC_FAULT = """SIGSEGV: segmentation violation
PC=0x436cfd m=3 sigcode=1 addr=0x0

goroutine 0 gp=0x100a9076f00 m=3 mp=0x100a90d3008 [idle]:
runtime.(*spanQueue).tryDrain(0x9aa0a9aa00000800?, 0xa9aa0a9aa0a9aa0a?, 0xaa0a9aa0?)
\truntime/mgcmark_greenteagc.go:520 +0x5d fp=0x100a90e9cc0 sp=0x100a90e9ca0 pc=0x436cfd
"""


@pytest.mark.parametrize(
    ("stderr", "kind", "says"),
    [
        ("fatal error: runtime: out of memory\n", BuildLimitExceeded, "memory limit of 256 MiB"),
        ("fatal error: runtime: cannot allocate memory\n", BuildLimitExceeded, "memory limit of 256 MiB"),
        (GC_FAULT, BuildLimitExceeded, "memory limit of 256 MiB"),
        ("Error: accumulating resources: SIGSEGV: in a file name\n", BuildError, "accumulating resources"),
    ],
)
def test_how_kustomize_fails_at_its_memory_limit(stderr: str, kind: type, says: str, tmp_path: Path) -> None:
    err = _failure(2, stderr, tmp_path, 256 << 20)
    assert type(err) is kind
    assert says in str(err)
