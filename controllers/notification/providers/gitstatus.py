"""Commit statuses for events that carry a revision: github, gitlab, gitea, bitbucket.

The Provider's address is the repository URL (https or ssh); the status is posted on the commit
of the event's `revision` metadata (`main@sha1:<hex>`, `sha1:<hex>` or legacy `main/<hex>`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers.base import (
    OutgoingRequest,
    ProviderConfig,
    ProviderConfigError,
    basic_auth_header,
    json_request,
    split_camel_case,
)

_SCP = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


@dataclass
class Repository:
    host: str  # scheme://host[:port]
    path: str  # owner/repo (GitLab: may include subgroups)

    @property
    def owner_and_name(self) -> tuple[str, str]:
        owner, _, name = self.path.rpartition("/")
        if not owner or not name:
            raise ProviderConfigError(f"repository path {self.path!r} must be <owner>/<name>")
        return owner, name


def parse_repository(address: str) -> Repository:
    address = address.strip()
    if "://" not in address:
        m = _SCP.match(address)
        if not m:
            raise ProviderConfigError(f"invalid repository address {address!r}")
        host, path = f"https://{m.group('host')}", m.group("path")
    else:
        parts = urlsplit(address)
        scheme = "https" if parts.scheme in ("ssh", "git") else parts.scheme
        if scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError(f"invalid repository address {address!r}")
        netloc = parts.hostname
        if parts.port and parts.scheme in ("http", "https"):
            netloc += f":{parts.port}"
        host, path = f"{scheme}://{netloc}", parts.path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    if not path:
        raise ProviderConfigError(f"repository address {address!r} has no path")
    return Repository(host=host, path=path)


def commit_sha(revision: str) -> str:
    """The commit hash of a Flux revision string."""
    if "@" in revision:
        revision = revision.rsplit("@", 1)[1]
    if ":" in revision:
        algo, _, digest = revision.partition(":")
        if algo not in ("sha1", "sha256"):
            raise ProviderConfigError(f"revision {revision!r} is not a Git commit")
        revision = digest
    elif "/" in revision:
        revision = revision.rsplit("/", 1)[1]
    if not re.fullmatch(r"[0-9a-fA-F]{7,64}", revision):
        raise ProviderConfigError(f"revision {revision!r} has no commit hash")
    return revision.lower()


def status_id(cfg: ProviderConfig, event: Event) -> str:
    """`kind/name/<provider uid prefix>`, lower case: one status per object and Provider (or the
    Provider's commitStatusExpr result)."""
    if cfg.commit_status_id:
        return cfg.commit_status_id
    obj = event.involved_object
    parts = [obj.kind, obj.name]
    if "summary" in event.metadata:
        parts.insert(0, event.metadata["summary"])
    if cfg.uid:
        parts.append(cfg.uid[:10])
    return "/".join(parts).lower()


def status_description(event: Event) -> str:
    return " ".join(w for w in split_camel_case(event.reason) if w.strip()).lower()[:140]


def wants_status(event: Event) -> bool:
    return "revision" in event.metadata and event.reason != "Progressing" and event.severity != "trace"


def _need_token(cfg: ProviderConfig) -> None:
    if not cfg.token:
        raise ProviderConfigError(f"{cfg.type} commit status requires a token in the Provider's secretRef")


def build_github(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    if not wants_status(event):
        return []
    _need_token(cfg)
    repo = parse_repository(cfg.address)
    owner, name = repo.owner_and_name
    api = "https://api.github.com" if repo.host == "https://github.com" else f"{repo.host}/api/v3"
    sha = commit_sha(event.metadata["revision"])
    body = {
        "state": "failure" if event.severity == "error" else "success",
        "context": status_id(cfg, event),
        "description": status_description(event),
    }
    headers = {
        "Authorization": f"Bearer {cfg.token}",
        "Accept": "application/vnd.github+json",
        **cfg.headers,
    }
    return [json_request(f"{api}/repos/{owner}/{name}/statuses/{sha}", body, headers)]


def build_gitlab(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    if not wants_status(event):
        return []
    _need_token(cfg)
    repo = parse_repository(cfg.address)
    sha = commit_sha(event.metadata["revision"])
    body = {
        "state": "failed" if event.severity == "error" else "success",
        "name": status_id(cfg, event),
        "description": status_description(event),
    }
    url = f"{repo.host}/api/v4/projects/{quote(repo.path, safe='')}/statuses/{sha}"
    return [json_request(url, body, {"PRIVATE-TOKEN": cfg.token, **cfg.headers})]


def build_gitea(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    if not wants_status(event):
        return []
    _need_token(cfg)
    repo = parse_repository(cfg.address)
    owner, name = repo.owner_and_name
    sha = commit_sha(event.metadata["revision"])
    body = {
        "state": "failure" if event.severity == "error" else "success",
        "context": status_id(cfg, event),
        "description": status_description(event),
    }
    url = f"{repo.host}/api/v1/repos/{owner}/{name}/statuses/{sha}"
    return [json_request(url, body, {"Authorization": f"token {cfg.token}", **cfg.headers})]


def build_bitbucket(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    """Token is `<username>:<app password>` (Flux's format), or the password with a username."""
    if not wants_status(event):
        return []
    _need_token(cfg)
    if cfg.username:
        user, password = cfg.username, cfg.token
    else:
        user, sep, password = cfg.token.partition(":")
        if not sep or not user or not password:
            raise ProviderConfigError("bitbucket token must be <username>:<app password>")
    repo = parse_repository(cfg.address)
    owner, name = repo.owner_and_name
    api = "https://api.bitbucket.org/2.0" if repo.host == "https://bitbucket.org" else f"{repo.host}/2.0"
    sha = commit_sha(event.metadata["revision"])
    sid = status_id(cfg, event)
    body = {
        "state": "FAILED" if event.severity == "error" else "SUCCESSFUL",
        "key": hashlib.sha1(sid.encode()).hexdigest(),
        "name": sid,
        "description": status_description(event),
        "url": f"{repo.host}/{repo.path}",
    }
    url = f"{api}/repositories/{owner}/{name}/commit/{sha}/statuses/build"
    return [json_request(url, body, {"Authorization": basic_auth_header(user, password), **cfg.headers})]


def build_bitbucketserver(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    """Bitbucket Server/Data Center build status; address `https://host/scm/<project>/<repo>.git`."""
    if not wants_status(event):
        return []
    repo = parse_repository(cfg.address)
    parts = repo.path.split("/")
    if parts and parts[0] == "scm":
        parts = parts[1:]
    if len(parts) != 2:
        raise ProviderConfigError("bitbucketserver address must end in /scm/<project>/<repository>(.git)")
    project, name = parts
    sha = commit_sha(event.metadata["revision"])
    sid = status_id(cfg, event)
    if cfg.token:
        auth = f"Bearer {cfg.token}"
    elif cfg.username and cfg.password:
        auth = basic_auth_header(cfg.username, cfg.password)
    else:
        raise ProviderConfigError("bitbucketserver requires a token, or username and password")
    body = {
        "state": "FAILED" if event.severity == "error" else "SUCCESSFUL",
        "key": hashlib.sha1(sid.encode()).hexdigest(),
        "name": sid,
        "description": status_description(event),
        "url": f"{repo.host}/projects/{project}/repos/{name}",
    }
    url = f"{repo.host}/rest/api/1.0/projects/{project}/repos/{name}/commits/{sha}/builds"
    return [json_request(url, body, {"Authorization": auth, "X-Atlassian-Token": "no-check", **cfg.headers})]


def build_azuredevops(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    """Azure DevOps commit status; address `https://dev.azure.com/<org>/<project>/_git/<repo>`."""
    if not wants_status(event):
        return []
    _need_token(cfg)
    repo = parse_repository(cfg.address)
    parts = repo.path.split("/")
    if len(parts) != 4 or parts[2] != "_git":
        raise ProviderConfigError(
            "azuredevops address must be https://<host>/<org>/<project>/_git/<repository>"
        )
    org, project, _, name = parts
    sha = commit_sha(event.metadata["revision"])
    body = {
        "state": "failed" if event.severity == "error" else "succeeded",
        "description": status_description(event),
        "context": {"genre": "fluxcd", "name": status_id(cfg, event)},
    }
    url = f"{repo.host}/{org}/{project}/_apis/git/repositories/{name}/commits/{sha}/statuses?api-version=6.0"
    return [json_request(url, body, {"Authorization": basic_auth_header("", cfg.token), **cfg.headers})]


def build_githubdispatch(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    """repository_dispatch with event_type `<kind>/<name>.<namespace>` and the event as payload."""
    _need_token(cfg)
    repo = parse_repository(cfg.address)
    owner, name = repo.owner_and_name
    api = "https://api.github.com" if repo.host == "https://github.com" else f"{repo.host}/api/v3"
    obj = event.involved_object
    body = {"event_type": f"{obj.kind}/{obj.name}.{obj.namespace}", "client_payload": event.to_json()}
    headers = {"Authorization": f"Bearer {cfg.token}", "Accept": "application/vnd.github+json", **cfg.headers}
    return [json_request(f"{api}/repos/{owner}/{name}/dispatches", body, headers)]
