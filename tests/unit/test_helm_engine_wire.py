"""What Helm sends and gets on the wire: storage requests moved to storageNamespace, Flux's field
manager on writes, only this controller's Helm admitted; Tide's post-renderer; errors typed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from tide.controllers.helm.apiproxy import (
    FIELD_MANAGER,
    LOCAL_ROUTE,
    HelmApiProxy,
    is_storage_request,
    rewrite,
    split_route,
    upstream_headers,
)
from tide.controllers.helm.discovery_cache import API_KINDS
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
from tide.shared.kube.config import Connection

API_WATCHES = (*(f"/apis/{kind}" for kind in API_KINDS), "/version")
"""What the proxy reads itself, to know when discovery changes (see discovery_cache)."""

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


RELEASE_SELECTOR = "helm.toolkit.fluxcd.io/name=app,helm.toolkit.fluxcd.io/namespace=flux-system"


@pytest.mark.parametrize(
    ("method", "path", "query", "selector"),
    [
        # Helm's kstatus wait: an informer's list, then its watch, of each kind of the release.
        ("GET", "/apis/apps/v1/namespaces/apps/deployments", {"limit": "500", "resourceVersion": "0"},
         RELEASE_SELECTOR),
        ("GET", "/api/v1/namespaces/apps/services", {"watch": "true", "resourceVersion": "7"},
         RELEASE_SELECTOR),
        ("GET", "/apis/batch/v1/namespaces/apps/jobs", {"watch": "1"}, RELEASE_SELECTOR),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {"resourceVersion": "0"},
         RELEASE_SELECTOR),
        ("GET", "/api/v1/namespaces", {"resourceVersion": "0"}, RELEASE_SELECTOR),
        # Left alone: a chart's `lookup` (no resourceVersion), selectors of their own (release
        # storage, a Deployment's ReplicaSets), named objects, subresources, writes, discovery.
        ("GET", "/api/v1/namespaces/apps/secrets", {}, None),
        ("GET", "/api/v1/namespaces/store/secrets", {"labelSelector": "owner=helm", "resourceVersion": "0"},
         "owner=helm"),
        ("GET", "/apis/apps/v1/namespaces/apps/replicasets", {"labelSelector": "app=web", "watch": "1"},
         "app=web"),
        ("GET", "/apis/apps/v1/namespaces/apps/deployments",
         {"fieldSelector": "metadata.name=web", "watch": "1"}, None),
        ("GET", "/apis/apps/v1/namespaces/apps/deployments/web", {"resourceVersion": "0"}, None),
        ("GET", "/apis/apps/v1/namespaces/apps/deployments/web/status", {"watch": "1"}, None),
        ("PATCH", "/apis/apps/v1/namespaces/apps/deployments/web", {"resourceVersion": "0"}, None),
        ("GET", "/apis/apps/v1", {"resourceVersion": "0"}, None),
    ],
)  # fmt: skip
def test_helms_waits_read_only_the_releases_objects(method, path, query, selector):
    prefix = f"/{TOKEN}/storage/store/of/flux-system/app"
    _, out = rewrite(TOKEN, method, prefix + path, query, b"")
    assert out.get("labelSelector") == selector
    # Without the HelmRelease in the path, nothing is scoped.
    _, plain = rewrite(TOKEN, method, f"/{TOKEN}/storage/store{path}", query, b"")
    assert plain.get("labelSelector") == query.get("labelSelector")


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


@pytest.mark.parametrize(
    ("path", "route", "rest"),
    [
        (f"/{TOKEN}/to/ab12/storage/apps/api/v1", "ab12", f"/{TOKEN}/storage/apps/api/v1"),
        (f"/{TOKEN}/to/local/storage/apps/api", LOCAL_ROUTE, f"/{TOKEN}/storage/apps/api"),
        (f"/{TOKEN}/storage/apps/api", LOCAL_ROUTE, f"/{TOKEN}/storage/apps/api"),
        # Not a route name: left for rewrite() to refuse.
        (f"/{TOKEN}/to/../storage/apps/api", LOCAL_ROUTE, f"/{TOKEN}/to/../storage/apps/api"),
    ],
)
def test_the_route_is_read_from_the_path(path, route, rest):
    assert split_route(path) == (route, rest)


def test_helm_cannot_choose_whom_it_impersonates():
    """Impersonation headers from Helm (an SDK option, a chart's lookup) never reach the API
    server; the route's ServiceAccount does, and nothing when the route impersonates nobody."""
    incoming = {
        "Impersonate-User": "system:admin",
        "impersonate-group": "system:masters",
        "Impersonate-Extra-Scopes": "x",
        "Authorization": "Bearer from-helm",
        "Accept": "application/json",
    }
    tenant = "system:serviceaccount:team:reconciler"
    assert upstream_headers(incoming, tenant) == {"Accept": "application/json", "Impersonate-User": tenant}
    assert upstream_headers(incoming, None) == {"Accept": "application/json"}


async def test_routes_per_identity_and_cluster():
    local = Connection(server="https://127.0.0.1:6443")
    proxy = HelmApiProxy(local)
    tenant = "system:serviceaccount:team:reconciler"
    assert proxy.route("", local, None) == LOCAL_ROUTE
    as_tenant = proxy.route(f"|{tenant}", local, tenant)
    assert as_tenant not in (LOCAL_ROUTE, "") and proxy.route(f"|{tenant}", local, tenant) == as_tenant
    remote = Connection(server="https://10.0.0.1:6443")
    on_remote = proxy.route("remote:team/kc", remote, None)
    assert on_remote not in (as_tenant, LOCAL_ROUTE)
    # A new kubeconfig Secret version: the same route, now to the new connection.
    moved = Connection(server="https://10.0.0.2:6443")
    assert proxy.route("remote:team/kc", moved, None) == on_remote
    assert proxy._routes[on_remote].connection is moved
    assert proxy._routes[as_tenant].impersonate == tenant
    assert f"/to/{as_tenant}/storage/store" in proxy.kubeconfig("store", "apps", as_tenant)
    await proxy.close()


async def test_each_route_goes_out_on_its_own_connection_as_its_own_identity():
    """Two small HTTP servers stand in for this cluster's API server and a remote one: a request
    on a route reaches that route's server with that connection's credentials and the route's
    impersonation, storage moved and the field manager set as on the local route."""
    seen: list[tuple[str, str, dict[str, str]]] = []

    def upstream(label: str) -> web.Application:
        async def record(request: web.Request) -> web.Response:
            seen.append((label, request.path_qs, dict(request.headers)))
            return web.json_response({"kind": "Status"})

        return _upstream_app(record)

    async with TestServer(upstream("local")) as here, TestServer(upstream("remote")) as there:
        local = Connection(server=str(here.make_url("")), token="controller")
        proxy = HelmApiProxy(local)
        await proxy.start()
        try:
            tenant = "system:serviceaccount:team:reconciler"
            routes = {
                "local": proxy.route("", local, None),
                "tenant": proxy.route(f"|{tenant}", local, tenant),
                "remote": proxy.route(
                    "remote:team/kc", Connection(server=str(there.make_url("")), token="kc"), None
                ),
            }
            async with ClientSession() as client:
                for route in routes.values():
                    url = f"{_server(proxy, route)}/api/v1/namespaces/apps/secrets/sh.helm.release.v1.app.v1"
                    headers = {"Impersonate-User": "system:admin", "Impersonate-Group": "system:masters"}
                    async with client.patch(url, data=b"{}", headers=headers) as resp:
                        assert resp.status == 200
        finally:
            await proxy.close()
    path = "/api/v1/namespaces/store/secrets/sh.helm.release.v1.app.v1?fieldManager=helm-controller"
    seen = [s for s in seen if not s[1].startswith(API_WATCHES)]  # the proxy's own, see discovery_cache
    assert [(label, p) for label, p, _ in seen] == [("local", path), ("local", path), ("remote", path)]
    auth = [
        (h.get("Authorization"), h.get("Impersonate-User"), h.get("Impersonate-Group")) for _, _, h in seen
    ]
    assert auth == [
        ("Bearer controller", None, None),
        ("Bearer controller", tenant, None),
        ("Bearer kc", None, None),
    ]


async def test_the_engine_routes_targets_on_this_cluster_through_its_own_connection():
    from tide.controllers.helm.engine import HelmEngine
    from tide.shared.kube.client import KubeClient
    from tide.shared.kube.targets import Target as KubeTarget

    engine = HelmEngine(Connection(server="https://127.0.0.1:6443"))
    controller = KubeClient(Connection(server="https://127.0.0.1:6443"))  # the reconciler's client
    tenant = controller.as_service_account("team", "reconciler")
    remote = KubeClient(Connection(server="https://10.0.0.1:6443"))
    assert engine.route(KubeTarget(controller, "")) == LOCAL_ROUTE
    as_tenant = engine.route(KubeTarget(tenant, "|system:serviceaccount:team:reconciler", "t"))
    on_remote = engine.route(KubeTarget(remote, "remote:team/kc", None, "https://10.0.0.1:6443"))
    routes = engine.proxy._routes
    assert routes[as_tenant].connection is engine.proxy.connection
    assert routes[as_tenant].impersonate == "system:serviceaccount:team:reconciler"
    assert routes[on_remote].connection is remote.connection and routes[on_remote].impersonate is None
    await engine.close()  # no worker started: closes the proxy and removes the engine's home
    await controller.close()
    await remote.close()


async def test_discovery_is_read_once_until_a_crd_event():
    """A small HTTP server stands in for the API server, with watches of CRDs and APIServices the
    test sends events on: Helm's discovery reads reach it once while nothing changes, again after
    an event, and a chart's CRD write forgets what was kept too."""
    reads: list[str] = []
    events: dict[str, asyncio.Queue[bytes]] = {kind: asyncio.Queue() for kind in API_KINDS}

    async def serve(request: web.Request) -> web.StreamResponse:
        kind = next((k for k in API_KINDS if request.path == f"/apis/{k}"), None)
        if kind is not None and request.query.get("watch") != "1":
            return web.json_response(
                {"kind": "PartialObjectMetadataList", "metadata": {"resourceVersion": "7"}}
            )
        if kind is not None:
            response = web.StreamResponse()
            await response.prepare(request)
            while True:
                await response.write(await events[kind].get())
        if request.path == "/version":
            return web.json_response({"major": "1", "minor": "34"})
        reads.append(request.path)
        await asyncio.sleep(0.05)  # long enough for concurrent reads to overlap
        return web.json_response({"kind": "APIGroupDiscoveryList", "n": len(reads)})

    async with TestServer(_upstream_app(serve)) as here, _proxy_before(here) as proxy:
        proxy.discovery.settle = 0.0
        server = _server(proxy)
        for _ in range(100):  # both watches running
            if proxy.discovery.fresh:
                break
            await asyncio.sleep(0.02)
        async with ClientSession() as client:

            async def discover() -> dict:
                async with client.get(f"{server}/apis?timeout=32s") as resp:
                    assert resp.status == 200
                    return await resp.json()

            async def send(kind: str, event: bytes) -> None:
                """A watch event, and the proxy seeing it."""
                before = proxy.discovery.generation
                await events[kind].put(event)
                for _ in range(100):
                    if proxy.discovery.generation != before:
                        return
                    await asyncio.sleep(0.02)

            # No APIService served elsewhere, a 1.34 server: Helm's OpenAPI check is left out.
            assert proxy.server_validates_fields(LOCAL_ROUTE)
            assert not proxy.server_validates_fields("remote")
            assert [(await discover())["n"] for _ in range(3)] == [1, 1, 1]
            await send(API_KINDS[0], b'{"type":"ADDED","object":{}}\n')
            assert [(await discover())["n"] for _ in range(2)] == [2, 2]
            crd = f"{server}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            async with client.post(crd, data=b"{}") as resp:
                assert resp.status == 200
            assert (await discover())["n"] == 3
            # Concurrent reads after a change: one goes to the API server, the others wait for it.
            await send(API_KINDS[1], b'{"type":"MODIFIED","object":{"metadata":{"name":"v1."}}}\n')
            assert [d["n"] for d in await asyncio.gather(*(discover() for _ in range(5)))] == [4] * 5
    assert reads.count("/apis") == 4


async def test_a_watch_helm_stops_is_stopped_upstream():
    """Helm's wait stops its watches once the release is ready; the proxy must end the API server's
    watch then, not when the API server next sends an event: a watch scoped to one release's
    objects may see none for minutes, and each one left open holds a connection in the controller
    and a watch in the API server (100 releases left hundreds open)."""
    upstream_ended = asyncio.Event()
    started = asyncio.Event()

    async def serve(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "1" or "deployments" not in request.path:
            return web.json_response({"kind": "Status"})  # the proxy's own discovery watches
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"type":"ADDED","object":{}}\n')
        started.set()
        try:
            await asyncio.sleep(60)  # no more events: the release's objects do not change
        finally:
            upstream_ended.set()
        return response

    # The upstream handler is cancelled when the proxy closes its connection, as Go's would return.
    upstream = _upstream_app(serve, handler_cancellation=True)
    async with TestServer(upstream) as here, _proxy_before(here) as proxy:
        server = _server(proxy, origin=("apps", "app"))
        url = f"{server}/apis/apps/v1/namespaces/apps/deployments?watch=1&resourceVersion=5"
        async with ClientSession() as client:
            async with client.get(url) as watch:
                assert watch.status == 200
                await asyncio.wait_for(started.wait(), 5)
                await watch.content.readline()
        await asyncio.wait_for(upstream_ended.wait(), 5)


async def test_answers_reach_helm_as_sent_small_or_large():
    """Helm gets the API server's bytes and their encoding as they were sent, a small answer or a
    large streamed one."""
    import gzip

    small = gzip.compress(b'{"kind":"Secret"}')
    large = bytes(range(256)) * (3 * 4096)  # 3 MiB

    async def serve(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/small"):
            return web.Response(
                body=small, headers={"Content-Encoding": "gzip"}, content_type="application/json"
            )
        if request.path.endswith("/large"):
            response = web.StreamResponse()
            await response.prepare(request)
            for at in range(0, len(large), 65536):
                await response.write(large[at : at + 65536])
            return response
        return web.json_response({"kind": "Status"})

    async with TestServer(_upstream_app(serve)) as here, _proxy_before(here) as proxy:
        configmaps = f"{_server(proxy)}/api/v1/namespaces/apps/configmaps"
        async with ClientSession(auto_decompress=False) as client:
            async with client.get(f"{configmaps}/small") as resp:
                assert resp.headers["Content-Encoding"] == "gzip"
                assert await resp.read() == small
            async with client.get(f"{configmaps}/large") as resp:
                assert await resp.read() == large


@contextlib.asynccontextmanager
async def _proxy_before(upstream: TestServer) -> AsyncIterator[HelmApiProxy]:
    """A started proxy in front of a stand-in API server, closed after."""
    proxy = HelmApiProxy(Connection(server=str(upstream.make_url("")), token="controller"))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def _server(proxy: HelmApiProxy, route: str = LOCAL_ROUTE, origin: tuple[str, str] | None = None) -> str:
    """The proxy's address as a release's kubeconfig gives it to Helm."""
    return str(
        yaml.safe_load(proxy.kubeconfig("store", "apps", route, origin))["clusters"][0]["cluster"]["server"]
    )


def _upstream_app(handler: Any, **handler_args: Any) -> web.Application:
    """A small HTTP server standing in for an API server: every request to `handler`."""
    app = web.Application(handler_args=handler_args)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app
