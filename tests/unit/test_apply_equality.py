"""The equality rule that lets a no-op reconcile skip the API (see controllers/kustomize/fields.py)."""

import copy

from tide.controllers.kustomize.fields import (
    Fingerprint,
    contained_in,
    digest,
    fields_present,
    managed_fields,
    project,
    provably_unchanged,
)

M = "kustomize-controller"

DESIRED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "apps", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {"containers": [{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}]}
        },
    },
}

OWNED = {
    "f:metadata": {"f:labels": {"f:app": {}}},
    "f:spec": {
        "f:replicas": {},
        "f:template": {
            "f:spec": {
                "f:containers": {
                    'k:{"name":"web"}': {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {
                            'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}
                        },
                    }
                }
            }
        },
    },
}


def live_from(desired: dict, owned: dict = OWNED, manager: str = M) -> dict:
    """What the API server returns: defaults added, server metadata, status, managed fields."""
    live = copy.deepcopy(desired)
    live["metadata"].update(
        uid="u1",
        resourceVersion="100",
        generation=1,
        creationTimestamp="2026-01-01T00:00:00Z",
        managedFields=[
            {
                "manager": manager,
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": owned,
            },
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "subresource": "status",
                "fieldsV1": {"f:status": {"f:replicas": {}}},
            },
        ],
    )
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["ports"][0]["protocol"] = "TCP"
    container["imagePullPolicy"] = "IfNotPresent"
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    live["status"] = {"replicas": 2, "observedGeneration": 1}
    return live


def test_unchanged_object_is_proved_equal_without_a_request() -> None:
    assert provably_unchanged(DESIRED, live_from(DESIRED), M)


def test_manual_change_of_a_managed_field_is_detected() -> None:
    live = live_from(DESIRED)
    live["spec"]["replicas"] = 5
    assert not provably_unchanged(DESIRED, live, M)


def test_manual_change_of_image_is_detected() -> None:
    live = live_from(DESIRED)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:evil"
    assert not provably_unchanged(DESIRED, live, M)


def test_field_removed_from_git_is_detected() -> None:
    """We still own `f:app`, the desired object no longer has it: apply would remove it."""
    desired = copy.deepcopy(DESIRED)
    live = live_from(desired)
    del desired["metadata"]["labels"]["app"]
    assert not provably_unchanged(desired, live, M)


def test_extra_container_added_by_hand_is_detected() -> None:
    live = live_from(DESIRED)
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "x"})
    assert not provably_unchanged(DESIRED, live, M)


def test_fields_of_other_managers_do_not_count_as_drift() -> None:
    live = live_from(DESIRED)
    live["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    live["status"]["readyReplicas"] = 2
    assert provably_unchanged(DESIRED, live, M)


def test_no_ownership_means_no_proof() -> None:
    assert not provably_unchanged(DESIRED, live_from(DESIRED, manager="kubectl"), M)


def test_normalised_values_fall_back_to_dry_run() -> None:
    desired = copy.deepcopy(DESIRED)
    desired["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1000m"}}
    live = live_from(desired)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1"
    assert not provably_unchanged(desired, live, M)  # not provable: the dry-run decides


def test_bool_and_int_are_not_equal() -> None:
    assert not contained_in({"a": True}, {"a": 1})
    assert contained_in({"a": 1}, {"a": 1, "b": 2})
    assert not contained_in({"a": [1]}, {"a": [1, 2]})


def test_projection_and_presence() -> None:
    live = live_from(DESIRED)
    fields = managed_fields(live, M)
    assert fields is not None
    projected = project(live, fields)
    assert projected["f:spec"]["f:replicas"] == 2
    web = projected["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert web["f:image"] == "nginx:1"
    assert fields_present(DESIRED, {"f:spec": {"f:replicas": {}}})
    assert not fields_present(DESIRED, {"f:spec": {"f:paused": {}}})


def test_fingerprint_survives_status_updates_but_not_manual_edits() -> None:
    live = live_from(DESIRED)
    fp = Fingerprint.of(digest(DESIRED), live, M)
    assert fp is not None
    later = copy.deepcopy(live)
    later["metadata"]["resourceVersion"] = "200"
    later["status"]["readyReplicas"] = 2
    assert fp.matches(digest(DESIRED), later, M)
    edited = copy.deepcopy(later)
    edited["spec"]["replicas"] = 9
    assert not fp.matches(digest(DESIRED), edited, M)


def test_fingerprint_detects_ownership_moving_to_another_manager() -> None:
    """kubectl edit takes the fields it changed; even if set back to our value, we re-apply."""
    live = live_from(DESIRED)
    fp = Fingerprint.of(digest(DESIRED), live, M)
    assert fp is not None
    owned = copy.deepcopy(OWNED)
    del owned["f:spec"]["f:replicas"]
    assert not fp.matches(digest(DESIRED), live_from(DESIRED, owned=owned), M)


def test_fingerprint_requires_the_same_desired_object() -> None:
    live = live_from(DESIRED)
    fp = Fingerprint.of(digest(DESIRED), live, M)
    changed = copy.deepcopy(DESIRED)
    changed["spec"]["replicas"] = 3
    assert fp is not None and not fp.matches(digest(changed), live, M)
