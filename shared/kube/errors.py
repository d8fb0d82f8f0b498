"""API errors as the status the API server returned."""

from __future__ import annotations

from typing import Any


class KubeApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def invalid(self) -> bool:
        return self.status == 422


class KubeUnreachableError(KubeApiError):
    """No answer from the API server (connection refused or lost, timed out): transient, retried
    like a 503, and handled wherever an API error is (a partial apply still records what it wrote)."""

    def __init__(self, cause: BaseException) -> None:
        self.detail = str(cause) or type(cause).__name__
        super().__init__(503, "ServiceUnavailable", f"the API server could not be reached: {self.detail}")


class ResourceNotFoundError(KubeApiError):
    """The API server does not serve this apiVersion/kind (CRD missing, typo)."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(404, "NotFound", f"no resource for {kind} in {api_version}")
        self.api_version = api_version
        self.kind = kind


class KindNotServedError(ResourceNotFoundError):
    """No API group serves this kind at all (a reference naming a kind without its apiVersion)."""

    def __init__(self, kind: str) -> None:
        KubeApiError.__init__(self, 404, "NotFound", f"no API group serves the kind {kind}")
        self.api_version = ""
        self.kind = kind
