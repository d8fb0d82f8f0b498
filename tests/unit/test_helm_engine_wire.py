"""What Helm sends and gets on the wire: storage requests moved to storageNamespace, Flux's field
manager on writes, only this controller's Helm admitted; Tide's post-renderer; errors typed."""

from __future__ import annotations

import pytest

from tide.controllers.helm.apiproxy import FIELD_MANAGER, is_storage_request, rewrite
from tide.controllers.helm.engine import (
    ChartInvalid,
    ClusterUnreachable,
    EngineError,
    InstallOptions,
    ReleaseCancelled,
    ReleaseFailed,
    ReleaseNotFound,
    ReleaseTimeout,
    ValuesInvalid,
    classify,
    native,
)
from tide.controllers.helm.postrender import (
    PostRenderSpec,
    ReleaseStorageImpersonation,
    post_render,
)

TOKEN = "s3cret"
NS = "/api/v1/namespaces/apps/secrets"


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "upstream"),
    [
        # Helm's release storage: by name, by owner=helm selector, a created release Secret.
        (
            "GET",
            f"{NS}/sh.helm.release.v1.app.v1",
            {},
            b"",
            "/api/v1/namespaces/store/secrets/sh.helm.release.v1.app.v1",
        ),
        (
            "PUT",
            f"{NS}/sh.helm.release.v1.app.v2",
            {},
            b"{}",
            "/api/v1/namespaces/store/secrets/sh.helm.release.v1.app.v2",
        ),
        ("GET", NS, {"labelSelector": "name=app,owner=helm"}, b"", "/api/v1/namespaces/store/secrets"),
        (
            "POST",
            NS,
            {},
            b'{"metadata":{"name":"sh.helm.release.v1.app.v1"},"type":"helm.sh/release.v1"}',
            "/api/v1/namespaces/store/secrets",
        ),
        # The chart's own objects stay where Helm puts them.
        ("POST", NS, {}, b'{"metadata":{"name":"db-password"},"type":"Opaque"}', NS),
        ("GET", f"{NS}/db-password", {}, b"", f"{NS}/db-password"),
        ("GET", NS, {"labelSelector": "owner=someone"}, b"", NS),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/apps/deployments/app",
            {},
            b"{}",
            "/apis/apps/v1/namespaces/apps/deployments/app",
        ),
        # Storage already in the target namespace: nothing to move.
        (
            "GET",
            "/api/v1/namespaces/store/secrets/sh.helm.release.v1.app.v1",
            {},
            b"",
            "/api/v1/namespaces/store/secrets/sh.helm.release.v1.app.v1",
        ),
    ],
)
def test_storage_requests_move_to_the_storage_namespace(method, path, query, body, upstream):
    got, _ = rewrite(TOKEN, method, f"/{TOKEN}/storage/store{path}", query, body)
    assert got == upstream


@pytest.mark.parametrize(
    ("method", "query", "manager"),
    [
        ("PATCH", {"fieldManager": "python", "force": "true"}, FIELD_MANAGER),
        ("POST", {}, FIELD_MANAGER),
        ("PUT", {"fieldManager": "helm"}, FIELD_MANAGER),
        ("GET", {"watch": "true"}, None),
        ("DELETE", {}, None),
    ],
)
def test_writes_are_made_as_helm_controller(method, query, manager):
    _, out = rewrite(TOKEN, method, f"/{TOKEN}/storage/apps/api/v1/namespaces/apps/configmaps/x", query, b"")
    assert out.get("fieldManager") == manager
    assert {k: v for k, v in out.items() if k != "fieldManager"} == {
        k: v for k, v in query.items() if k != "fieldManager"
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces",
        "/wrong/storage/apps/api",
        f"/{TOKEN}x/storage/apps/api",
        f"/{TOKEN}/storage/Bad_NS/api",
    ],
)
def test_only_this_controllers_helm_is_admitted(path):
    with pytest.raises(PermissionError):
        rewrite(TOKEN, "GET", path, {}, b"")


def test_storage_request_detection_is_narrow():
    assert is_storage_request("GET", None, {"labelSelector": "owner = helm"}, b"")
    assert not is_storage_request("GET", None, {"labelSelector": "owner=helmet"}, b"")
    assert not is_storage_request("POST", None, {}, b'{"metadata":{"name":"sh.helm.release.v1.x"}}')


MANIFESTS = """---
# Source: demo/templates/cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
  labels: {team: b, keep: "yes"}
data: {a: "1"}
---
apiVersion: v1
kind: Service
metadata: {name: app}
"""


def test_post_render_adds_common_metadata_then_origin_labels():
    import yaml

    spec = PostRenderSpec(
        name="hr",
        namespace="flux",
        labels={"team": "a", "helm.toolkit.fluxcd.io/name": "spoofed"},
        annotations={"note": "x"},
    )
    docs = list(yaml.safe_load_all(post_render(MANIFESTS, spec)))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Service"]
    assert docs[0]["metadata"]["labels"] == {
        "team": "a",
        "keep": "yes",
        "helm.toolkit.fluxcd.io/name": "hr",  # origin labels come last and win
        "helm.toolkit.fluxcd.io/namespace": "flux",
    }
    assert docs[1]["metadata"]["annotations"] == {"note": "x"}
    assert docs[0]["data"] == {"a": "1"}


@pytest.mark.parametrize(
    ("error_type", "message", "cancelled", "expected", "retryable"),
    [
        ("HelmCancelledError", "context canceled", None, ReleaseTimeout, True),
        ("HelmCancelledError", "context canceled", "deadline", ReleaseTimeout, True),
        ("HelmCancelledError", "context canceled", "shutdown", ReleaseCancelled, True),
        ("HelmReleaseError", "resource not ready: context deadline exceeded", None, ReleaseTimeout, True),
        ("HelmReleaseError", "pre-upgrade hooks failed: job failed", None, ReleaseFailed, True),
        ("HelmNotFoundError", "release: not found", None, ReleaseNotFound, False),
        ("HelmRenderError", "template: demo/templates/x.yaml:3: bad", None, ChartInvalid, False),
        ("HelmValuesError", "values don't meet the schema", None, ValuesInvalid, False),
        ("HelmKubeError", "cluster unreachable", None, ClusterUnreachable, True),
        ("SomethingNew", "?", None, EngineError, True),
    ],
)
def test_sdk_errors_are_typed(error_type, message, cancelled, expected, retryable):
    err = classify(error_type, message, cancelled)
    assert type(err) is expected
    assert err.retryable is retryable


def test_native_options_leave_out_what_is_unset():
    assert native(InstallOptions(timeout_seconds=10, description=None)) == {
        "timeout_seconds": 10,
        "wait": "watcher",
        "wait_for_jobs": True,
        "skip_crds": True,
        "server_side_apply": True,
        "force_conflicts": True,
        "take_ownership": True,
    }


def test_a_chart_that_forges_release_storage_is_refused():
    forged = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sh.helm.release.v1.other.v9\n"
    with pytest.raises(ReleaseStorageImpersonation, match="reserved for Helm's release storage"):
        post_render(forged, PostRenderSpec("hr", "ns"))
    # A ConfigMap of that name is no storage record (the proxy moves only Secrets).
    assert "sh.helm.release.v1.other.v9" in post_render(
        forged.replace("Secret", "ConfigMap"), PostRenderSpec("hr", "ns")
    )
