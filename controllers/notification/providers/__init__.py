"""Provider types: each turns (ProviderConfig, Event) into the HTTP requests its service expects."""

from __future__ import annotations

from collections.abc import Callable

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers.alertmanager import build_alertmanager
from tide.controllers.notification.providers.base import (
    OutgoingRequest,
    ProviderConfig,
    ProviderConfigError,
)
from tide.controllers.notification.providers.chatops import build_datadog, build_lark, build_webex
from tide.controllers.notification.providers.generic import build_generic, build_generic_hmac
from tide.controllers.notification.providers.gitstatus import (
    build_azuredevops,
    build_bitbucket,
    build_bitbucketserver,
    build_gitea,
    build_github,
    build_githubdispatch,
    build_gitlab,
)
from tide.controllers.notification.providers.googlechat import build_googlechat
from tide.controllers.notification.providers.grafana import build_grafana
from tide.controllers.notification.providers.matrix import build_matrix
from tide.controllers.notification.providers.msteams import build_msteams
from tide.controllers.notification.providers.opsgenie import build_opsgenie
from tide.controllers.notification.providers.pagerduty import build_pagerduty
from tide.controllers.notification.providers.slack import (
    build_discord,
    build_mattermost,
    build_rocket,
    build_slack,
)
from tide.controllers.notification.providers.telegram import build_telegram

Builder = Callable[[ProviderConfig, Event], list[OutgoingRequest]]

BUILDERS: dict[str, Builder] = {
    "generic": build_generic,
    "generic-hmac": build_generic_hmac,
    "slack": build_slack,
    "msteams": build_msteams,
    "discord": build_discord,
    "googlechat": build_googlechat,
    "rocket": build_rocket,
    "mattermost": build_mattermost,
    "telegram": build_telegram,
    "matrix": build_matrix,
    "alertmanager": build_alertmanager,
    "grafana": build_grafana,
    "opsgenie": build_opsgenie,
    "pagerduty": build_pagerduty,
    "github": build_github,
    "gitlab": build_gitlab,
    "gitea": build_gitea,
    "bitbucket": build_bitbucket,
    "bitbucketserver": build_bitbucketserver,
    "azuredevops": build_azuredevops,
    "githubdispatch": build_githubdispatch,
    "webex": build_webex,
    "lark": build_lark,
    "datadog": build_datadog,
}

COMMIT_STATUS_TYPES = frozenset({"github", "gitlab", "gitea", "bitbucket", "bitbucketserver", "azuredevops"})
GIT_ADDRESS_TYPES = COMMIT_STATUS_TYPES | {"githubdispatch"}
ADDRESS_OPTIONAL = frozenset({"telegram", "pagerduty", "webex", "datadog"})


def build_requests(cfg: ProviderConfig, event: Event) -> list[OutgoingRequest]:
    builder = BUILDERS.get(cfg.type)
    if builder is None:
        raise ProviderConfigError(f"provider type {cfg.type!r} is not supported")
    return builder(cfg, event)


__all__ = [
    "BUILDERS",
    "COMMIT_STATUS_TYPES",
    "GIT_ADDRESS_TYPES",
    "OutgoingRequest",
    "ProviderConfig",
    "ProviderConfigError",
    "build_requests",
]
