"""Git URLs from a GitRepository (or a .gitmodules) are hostile: only http(s) and ssh are fetched,
and nothing in an SSH URL or Secret can become an option to OpenSSH."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tide.controllers.source import git
from tide.controllers.source.git import GitAuth, InvalidURL, Remote, ssh_destination
from tide.shared.api.source import GitRepositorySpec


@pytest.mark.parametrize(
    "url",
    [
        "ssh://-oProxyCommand=touch%20/tmp/pwned/repo.git",
        "ssh://-oProxyCommand=touch@example.com/repo.git",
        "ssh://git@-oProxyCommand=x:22/repo.git",
    ],
)
def test_ssh_option_injection_in_the_url_is_refused(url: str) -> None:
    with pytest.raises(InvalidURL, match="must not start with '-'"):
        Remote(url)


def test_ssh_option_injection_in_the_secret_username_is_refused() -> None:
    with pytest.raises(InvalidURL, match="username"):
        Remote("ssh://example.com/repo.git", GitAuth(username="-oProxyCommand=touch /tmp/pwned"))


@pytest.mark.parametrize(
    ("host", "user"), [("-oX", None), ("h", "-l"), ("h\nProxyCommand x", "git"), ("", "git")]
)
def test_ssh_destination_refuses(host: str, user: str | None) -> None:
    with pytest.raises(InvalidURL):
        ssh_destination(host, user)


def test_ssh_options_are_ended_before_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv: list[str] = []

    class Popen:
        def __init__(self, args: list[str], **_: Any) -> None:
            argv.extend(args)
            self.stdin = self.stdout = self.stderr = None

    monkeypatch.setattr(subprocess, "Popen", Popen)
    monkeypatch.setattr(git, "SubprocessWrapper", lambda proc: proc)
    vendor = git._OpenSSHVendor(tmp_path, GitAuth(known_hosts=b""), 5)
    vendor.run_command("example.com", "git-upload-pack '/repo.git'", username="git", port=2222)
    assert argv[-3:] == ["--", "git@example.com", "git-upload-pack '/repo.git'"]
    with pytest.raises(InvalidURL):
        vendor.run_command("-oProxyCommand=x", "git-upload-pack '/r'")


# Protected today; these stay refused: transports that run commands or read the controller's disk.
REFUSED_URLS = [
    "ext::sh -c touch% /tmp/pwned",
    "file:///etc",
    "/var/lib/repo.git",
    "../other-repo",
    "git@github.com:org/repo.git",
    "fd::17",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_non_network_git_urls_are_refused_by_the_client(url: str) -> None:
    with pytest.raises(InvalidURL, match="unsupported URL scheme"):
        Remote(url)


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_non_network_git_urls_are_refused_by_the_api(url: str) -> None:
    with pytest.raises(ValidationError):
        GitRepositorySpec.model_validate({"url": url, "interval": "1m"})


@pytest.mark.parametrize(
    "spec",
    [
        {"provider": "azure", "serviceAccountName": "tenant"},
        {"provider": "aws", "serviceAccountName": "tenant"},
        {"provider": "github", "secretRef": {"name": "app"}},
    ],
)
def test_workload_identity_providers_are_refused(spec: dict[str, Any]) -> None:
    """Not fetched anonymously as if the identity had been used: stalled with a clear message."""
    from tide.controllers.source.git_reconciler import GitRepositoryReconciler
    from tide.shared.api.source import GitRepository
    from tide.shared.runtime import StalledError

    obj = GitRepository.model_validate(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "repo", "namespace": "apps"},
            "spec": {"url": "https://example.com/repo.git", "interval": "1m", **spec},
        }
    )
    with pytest.raises(StalledError, match="not supported by Tide yet"):
        GitRepositoryReconciler._check_supported(obj)
