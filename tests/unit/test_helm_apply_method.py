"""Server-side apply for upgrade and rollback resolved as Flux does: `auto` follows how the release
was applied, conflicts are forced only with server-side apply, force replace only without."""

from __future__ import annotations

import pytest

from tide.controllers.helm.actions import resolve_server_side_apply
from tide.controllers.helm.engine import RollbackOptions, UpgradeOptions
from tide.controllers.helm.go_encoding import GoStruct
from tide.controllers.helm.storage import StoredRelease


def stored(apply_method: str | None) -> StoredRelease:
    release = GoStruct(name="app", version=1)
    if apply_method is not None:
        release["apply_method"] = apply_method
    return StoredRelease(release, {})


@pytest.mark.parametrize(
    ("setting", "release", "ssa"),
    [
        ("auto", stored("ssa"), True),
        ("auto", stored("csa"), False),
        ("auto", stored(None), False),  # `helm install` of Helm 3: adopted with client-side apply
        ("auto", None, False),
        ("true", stored("csa"), True),
        ("false", stored("ssa"), False),
    ],
)
def test_server_side_apply_forces_conflicts_and_client_side_may_replace(setting, release, ssa) -> None:  # type: ignore[no-untyped-def]
    for options in (
        UpgradeOptions(server_side_apply=setting, force_replace=True),
        RollbackOptions(server_side_apply=setting, force_replace=True),
    ):
        resolved = resolve_server_side_apply(options, release)
        assert (resolved.server_side_apply, resolved.force_conflicts, resolved.force_replace) == (
            str(ssa).lower(),
            ssa,
            not ssa,
        )
        assert type(resolved) is type(options)
