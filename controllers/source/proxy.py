"""The proxy a source reaches its remote through, from a spec.proxySecretRef Secret."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Proxy:
    address: str
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_secret_data(cls, data: Mapping[str, bytes]) -> Proxy | None:
        """None when the Secret has no `address` (the caller says so on the object)."""
        if not data.get("address"):
            return None
        username, password = data.get("username"), data.get("password")
        return cls(
            data["address"].decode(),
            username.decode() if username is not None else None,
            password.decode() if password is not None else None,
        )
