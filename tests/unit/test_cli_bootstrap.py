"""What `tide bootstrap git` writes to the repository and applies (pure parts)."""

from __future__ import annotations

import yaml

from tide.cli.commands import bootstrap


def test_sync_objects_like_flux() -> None:
    repo, ks = bootstrap.sync_objects(
        "flux-system", "https://git/x.git", "main", "clusters/dev", "1m", "flux-system"
    )
    assert repo["spec"] == {
        "interval": "1m0s",
        "ref": {"branch": "main"},
        "secretRef": {"name": "flux-system"},
        "url": "https://git/x.git",
    }
    assert ks["spec"] == {
        "interval": "10m0s",
        "path": "./clusters/dev",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
    }
    no_secret, _ = bootstrap.sync_objects("ns", "https://git/x.git", "main", "", "1m", None)
    assert "secretRef" not in no_secret["spec"]


def test_sync_path() -> None:
    assert bootstrap.sync_path("clusters/dev/") == "./clusters/dev"
    assert bootstrap.sync_path("/clusters/dev") == "./clusters/dev"
    assert bootstrap.sync_path("") == "./"
    assert bootstrap.sync_path(".") == "./"


def test_repository_files_are_deterministic() -> None:
    sync = bootstrap.sync_objects("flux-system", "https://git/x.git", "main", "clusters/dev", "1m", None)
    files = bootstrap.repository_files("---\nkind: Namespace\n", sync, "clusters/dev")
    assert sorted(files) == [
        "clusters/dev/flux-system/gotk-components.yaml",
        "clusters/dev/flux-system/gotk-sync.yaml",
        "clusters/dev/flux-system/kustomization.yaml",
    ]
    assert yaml.safe_load(files["clusters/dev/flux-system/kustomization.yaml"])["resources"] == [
        "gotk-components.yaml",
        "gotk-sync.yaml",
    ]
    assert files == bootstrap.repository_files("---\nkind: Namespace\n", sync, "clusters/dev")
    assert sorted(bootstrap.repository_files("", sync, ""))[0] == "flux-system/gotk-components.yaml"
