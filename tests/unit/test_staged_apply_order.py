from tide.controllers.kustomize.apply import (
    Change,
    ChangeSet,
    prune_disabled,
    remove_pointer,
    selector_matches,
    ssa_policy,
    stage_of,
    staged,
    strip_ignored,
)
from tide.shared.inventory import ObjectRef


def o(api_version: str, kind: str, name: str = "x", **meta: object) -> dict:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, **meta}}


def test_flux_stages() -> None:
    assert stage_of(o("apiextensions.k8s.io/v1", "CustomResourceDefinition")) == 0
    assert stage_of(o("v1", "Namespace")) == 0
    assert stage_of(o("rbac.authorization.k8s.io/v1", "ClusterRole")) == 0
    assert stage_of(o("storage.k8s.io/v1", "StorageClass")) == 1
    assert stage_of(o("networking.k8s.io/v1", "IngressClass")) == 1
    assert stage_of(o("gateway.networking.k8s.io/v1", "GatewayClass")) == 1
    assert stage_of(o("cert-manager.io/v1", "ClusterIssuer")) == 2
    assert stage_of(o("source.toolkit.fluxcd.io/v1", "GitRepository")) == 2
    assert stage_of(o("apps/v1", "Deployment")) == 3
    assert stage_of(o("v1", "ConfigMap")) == 3
    assert stage_of(o("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")) == 3


def test_staged_order_within_stage_follows_kind_order() -> None:
    objs = [
        o("apps/v1", "Deployment", "d"),
        o("example.com/v1", "Widget", "w"),
        o("v1", "Service", "s"),
        o("v1", "ServiceAccount", "sa"),
        o("v1", "Namespace", "ns"),
        o("apiextensions.k8s.io/v1", "CustomResourceDefinition", "crd"),
        o("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "hook"),
        o("v1", "ConfigMap", "cm"),
    ]
    stages = staged(objs)
    names = [[x["metadata"]["name"] for x in s] for s in stages]
    assert names == [["ns", "crd"], [], ["w"], ["sa", "cm", "s", "d", "hook"]]


def test_ssa_policy_from_annotation_or_label() -> None:
    assert ssa_policy(o("v1", "ConfigMap")) == "Override"
    assert (
        ssa_policy(o("v1", "ConfigMap", annotations={"kustomize.toolkit.fluxcd.io/ssa": "merge"})) == "Merge"
    )
    assert (
        ssa_policy(o("v1", "ConfigMap", labels={"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"}))
        == "IfNotPresent"
    )
    assert (
        ssa_policy(o("v1", "ConfigMap", annotations={"kustomize.toolkit.fluxcd.io/ssa": "Ignore"}))
        == "Ignore"
    )
    assert (
        ssa_policy(o("v1", "ConfigMap", annotations={"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}))
        == "Ignore"
    )


def test_prune_disabled() -> None:
    assert prune_disabled(o("v1", "ConfigMap", annotations={"kustomize.toolkit.fluxcd.io/prune": "disabled"}))
    assert prune_disabled(o("v1", "ConfigMap", annotations={"kustomize.toolkit.fluxcd.io/ssa": "Ignore"}))
    assert not prune_disabled(o("v1", "ConfigMap"))


def test_ignore_rules_strip_json_pointers_for_matching_targets() -> None:
    dep = o("apps/v1", "Deployment", "web", namespace="apps", labels={"hpa": "on"})
    dep["spec"] = {"replicas": 3, "template": {"metadata": {"annotations": {"a/b": "1", "c": "2"}}}}
    rules = [
        {"paths": ["/spec/replicas"], "target": {"kind": "Deployment", "labelSelector": "hpa=on"}},
        {"paths": ["/spec/template/metadata/annotations/a~1b"]},
        {"paths": ["/spec/replicas"], "target": {"kind": "StatefulSet"}},
    ]
    strip_ignored(dep, rules)
    assert dep["spec"] == {"template": {"metadata": {"annotations": {"c": "2"}}}}


def test_remove_pointer_tolerates_missing_paths() -> None:
    obj = {"a": [{"b": 1}]}
    remove_pointer(obj, "/x/y")
    remove_pointer(obj, "/a/5/b")
    remove_pointer(obj, "/a/0/b")
    assert obj == {"a": [{}]}


def test_selector_regex_and_labels() -> None:
    dep = o("apps/v1", "Deployment", "web-1", namespace="apps", labels={"tier": "fe"})
    assert selector_matches({"group": "apps", "kind": "Deploy.*", "name": "web-.*"}, dep)
    assert not selector_matches({"namespace": "other"}, dep)
    assert selector_matches({"labelSelector": "tier=fe,!canary"}, dep)
    assert not selector_matches({"labelSelector": "tier!=fe"}, dep)


def test_change_set_message_is_flux_like() -> None:
    cs = ChangeSet()
    cs.add(Change(ObjectRef("apps", "Deployment", "default", "podinfo"), "configured"))
    cs.add(Change(ObjectRef("", "Service", "default", "podinfo"), "unchanged"))
    cs.add(Change(ObjectRef("", "Namespace", "", "apps"), "created"))
    assert cs.message() == "Deployment/default/podinfo configured\nNamespace/apps created"
    assert cs.counts() == {"configured": 1, "unchanged": 1, "created": 1}


def test_takeover_patch_drops_kubectl_managers_and_last_applied() -> None:
    from tide.controllers.kustomize.apply import KUBECTL_MANAGERS, takeover_patch

    live = o("v1", "ConfigMap", "c", annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"})
    live["metadata"]["managedFields"] = [
        {"manager": "kubectl-client-side-apply", "operation": "Update"},
        {"manager": "kustomize-controller", "operation": "Apply"},
    ]
    ops = takeover_patch(live, KUBECTL_MANAGERS)
    assert ops == [
        {"op": "replace", "path": "/metadata/managedFields",
         "value": [{"manager": "kustomize-controller", "operation": "Apply"}]},
        {"op": "remove", "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"},
    ]  # fmt: skip
    assert takeover_patch(o("v1", "ConfigMap", "c"), KUBECTL_MANAGERS) == []
