"""The seed's layout: clusters/<name> with infrastructure and apps Kustomizations, dependsOn, health
checks, substitution from a ConfigMap and a Secret, a CRD and its custom resource in one build."""

from __future__ import annotations

import pytest

from e2e.fixtures.kustomize import get_obj, git_source, kustomization, wait_ks, wait_until
from e2e.fixtures.source import apply, condition, secret

pytestmark = pytest.mark.e2e

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n"


def seed_repo(uid: str) -> dict[str, str]:
    group = f"cert-manager-{uid}.example.com"

    def ks(name: str, path: str, extra: str = "") -> str:
        return f"""apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: flux-system
spec:
  interval: 1m
  retryInterval: 5s
  timeout: 60s
  sourceRef:
    kind: GitRepository
    name: k8s-manifests
  path: {path}
  prune: true
{extra}"""

    files = {
        # clusters/<name>: what the root Kustomization applies, per cluster.
        "clusters/us-east-1/infrastructure.yaml": ks("infrastructure", "./infrastructure"),
        "clusters/us-east-1/cert-manager.yaml": ks("cert-manager", "./cert-manager", "  wait: true\n"),
        "clusters/us-east-1/apps.yaml": ks(
            "payment-service",
            "./apps/payment-service/overlays/us-east-1",
            f"""  force: false
  targetNamespace: payment-{uid}
  healthChecks:
    - apiVersion: apps/v1
      kind: Deployment
      name: payment-service
      namespace: payment-{uid}
  dependsOn:
    - name: infrastructure
    - name: cert-manager
  postBuild:
    substitute:
      cluster_name: us-east-1
    substituteFrom:
      - kind: ConfigMap
        name: cluster-settings
      - kind: Secret
        name: cluster-secrets
""",
        ),
        "clusters/eu-west-1/infrastructure.yaml": ks("infrastructure", "./infrastructure"),
        # infrastructure: namespaces for the apps and shared services.
        "infrastructure/ingress-nginx/kustomization.yaml": "resources:\n- namespace.yaml\n- config.yaml\n",
        "infrastructure/ingress-nginx/namespace.yaml": f"{NAMESPACE}  name: ingress-{uid}\n",
        "infrastructure/ingress-nginx/config.yaml": (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ingress-nginx\n  namespace: ingress-{uid}\n"
            'data:\n  use-forwarded-headers: "true"\n'
        ),
        "infrastructure/payment/namespace.yaml": f"{NAMESPACE}  name: payment-{uid}\n",
        # cert-manager: a CRD and a custom resource of it in the same build (staged apply).
        "cert-manager/crd.yaml": f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: clusterissuers.{group}
spec:
  group: {group}
  names:
    kind: ClusterIssuer
    plural: clusterissuers
    singular: clusterissuer
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
""",
        "cert-manager/issuer.yaml": f"""apiVersion: {group}/v1
kind: ClusterIssuer
metadata:
  name: letsencrypt-{uid}
spec:
  acme:
    server: https://acme-v02.api.letsencrypt.org/directory
""",
        # apps: base and per-cluster overlays.
        "apps/payment-service/base/kustomization.yaml": (
            "resources:\n- deployment.yaml\n- service.yaml\n- config.yaml\n"
        ),
        "apps/payment-service/base/deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: payment-service
  annotations:
    region: ${cluster_region}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: payment-service
  template:
    metadata:
      labels:
        app: payment-service
    spec:
      containers:
      - name: app
        image: ghcr.io/example/payment-service:${image_tag:=1.0.0}
""",
        "apps/payment-service/base/service.yaml": """apiVersion: v1
kind: Service
metadata:
  name: payment-service
spec:
  selector:
    app: payment-service
  ports:
  - port: 80
    targetPort: 8080
""",
        "apps/payment-service/base/config.yaml": """apiVersion: v1
kind: ConfigMap
metadata:
  name: payment-config
data:
  cluster: ${cluster_name}
  region: ${cluster_region}
  db_password: ${db_password}
  literal: $${not_substituted}
""",
        "apps/payment-service/overlays/us-east-1/kustomization.yaml": """resources:
- ../../base
patches:
- target:
    kind: Deployment
    name: payment-service
  patch: |
    - op: replace
      path: /spec/replicas
      value: 2
""",
        "apps/payment-service/overlays/eu-west-1/kustomization.yaml": "resources:\n- ../../base\n",
    }
    return files


def test_seed_layout_converges(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    uid = namespace.rsplit("-", 1)[-1]
    repo = git_server.create_repo(f"seed-{namespace}", seed_repo(uid))
    flux_controllers()
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-settings"},
                "data": {"cluster_region": "us-east-1a", "image_tag": "2.3.4"}}  # fmt: skip
    apply(kubectl, namespace,
          git_source("k8s-manifests", repo.public_http_url),
          settings,
          secret("cluster-secrets", {"db_password": "s3cr3t"}),
          kustomization("flux-system", path="./clusters/us-east-1", source="k8s-manifests",
                        targetNamespace=namespace))  # fmt: skip
    revision = f"main@sha1:{repo.head()}"
    for name in ("flux-system", "infrastructure", "cert-manager", "payment-service"):
        wait_ks(kubectl, namespace, name, revision=revision, timeout=120)

    payment = wait_ks(kubectl, namespace, "payment-service", revision=revision)
    assert condition(payment, "Healthy")["status"] == "True"
    deployment = get_obj(kubectl, f"payment-{uid}", "deployment", "payment-service")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["annotations"]["region"] == "us-east-1a"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.3.4")
    assert any(c["type"] == "Available" and c["status"] == "True" for c in deployment["status"]["conditions"])
    config = get_obj(kubectl, f"payment-{uid}", "configmap", "payment-config")
    assert config["data"] == {"cluster": "us-east-1", "region": "us-east-1a", "db_password": "s3cr3t",
                              "literal": "${not_substituted}"}  # fmt: skip
    issuer = get_obj(kubectl, "", f"clusterissuers.cert-manager-{uid}.example.com", f"letsencrypt-{uid}")
    assert issuer["spec"]["acme"]["server"].startswith("https://")
    cert = wait_ks(kubectl, namespace, "cert-manager", revision=revision)
    assert condition(cert, "Healthy")["status"] == "True"
    ids = [e["id"] for e in cert["status"]["inventory"]["entries"]]
    assert ids == [f"_clusterissuers.cert-manager-{uid}.example.com_apiextensions.k8s.io_"
                   "CustomResourceDefinition",
                   f"_letsencrypt-{uid}_cert-manager-{uid}.example.com_ClusterIssuer"]  # fmt: skip

    # Removing the cluster's apps file prunes the payment-service Kustomization, which prunes its objects.
    repo.commit({"clusters/us-east-1/apps.yaml": None})
    kubectl("annotate", "-n", namespace, "--overwrite", "gitrepository/k8s-manifests",
            "reconcile.fluxcd.io/requestedAt=prune")  # fmt: skip
    wait_until(lambda: not get_obj(kubectl, namespace, "kustomization", "payment-service"), 60,
               "payment-service Kustomization pruned")  # fmt: skip
    wait_until(lambda: not get_obj(kubectl, f"payment-{uid}", "deployment", "payment-service"), 60,
               "payment-service Deployment deleted with its Kustomization")  # fmt: skip
    for name in ("cert-manager", "infrastructure", "flux-system"):
        kubectl("delete", "kustomization", name, "-n", namespace, "--wait=true", "--timeout=60s")
    assert not get_obj(kubectl, "", "namespace", f"ingress-{uid}") or get_obj(
        kubectl, "", "namespace", f"ingress-{uid}")["status"]["phase"] == "Terminating"  # fmt: skip


def test_missing_substitution_source_is_a_clear_error(
    git_server, flux_controllers, kubectl, namespace
) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"subst-{namespace}", {
        "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  v: ${v}\n",
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", targetNamespace=namespace, retryInterval="2s",
                        postBuild={"substituteFrom": [{"kind": "ConfigMap", "name": "vars"},
                                                      {"kind": "Secret", "name": "maybe",
                                                       "optional": True}]}))  # fmt: skip
    wait_ks(kubectl, namespace, "app", status="False", contains='configmaps "vars" not found')
    apply(kubectl, namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vars"},
                               "data": {"v": "from-configmap"}})  # fmt: skip
    wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}", timeout=60)
    assert get_obj(kubectl, namespace, "configmap", "c")["data"] == {"v": "from-configmap"}
