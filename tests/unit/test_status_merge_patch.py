"""Status patches are the minimal RFC 7386 merge patch between stored and new status."""

from tide.shared.runtime.patch import apply_merge_patch, merge_patch


def test_unchanged_status_is_an_empty_patch() -> None:
    status = {"observedGeneration": 2, "conditions": [{"type": "Ready"}], "artifact": {"revision": "a"}}
    assert merge_patch(status, dict(status)) == {}


def test_removed_fields_become_null_and_nested_maps_are_diffed() -> None:
    old = {"observedGeneration": 1, "artifact": {"revision": "a", "digest": "d"}, "gone": 1}
    new = {"observedGeneration": 2, "artifact": {"revision": "b", "digest": "d"}}
    patch = merge_patch(old, new)
    assert patch == {"observedGeneration": 2, "artifact": {"revision": "b"}, "gone": None}
    assert apply_merge_patch(old, patch) == new


def test_lists_are_replaced_whole() -> None:
    old = {"conditions": [{"type": "Ready", "status": "True"}]}
    new = {"conditions": [{"type": "Ready", "status": "False"}]}
    assert merge_patch(old, new) == new
