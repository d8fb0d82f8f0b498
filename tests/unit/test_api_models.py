"""The models: Flux field names on the wire, snake_case in Python, Flux's defaults and validation."""

import hashlib
from typing import Any

import pytest
from pydantic import ValidationError

from tide.shared.api import (
    ALL_KINDS,
    Alert,
    ArtifactGenerator,
    Bucket,
    Condition,
    ExternalArtifact,
    GitRepository,
    HelmChart,
    HelmRelease,
    HelmRepository,
    Kustomization,
    OCIRepository,
    Provider,
    Receiver,
    load,
    model_for,
)
from tide.shared.api.helm import shorten_release_name
from tide.shared.api.meta import Artifact


def git_repository(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "podinfo", "namespace": "default", "generation": 3},
        "spec": {"interval": "5m", "url": "https://github.com/stefanprodan/podinfo", **spec},
    }


def kustomization(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system"},
        "spec": {
            "interval": "10m",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
            **spec,
        },
    }


def helm_release(api_version: str = "helm.toolkit.fluxcd.io/v2", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "HelmRelease",
        "metadata": {"name": "podinfo", "namespace": "apps"},
        "spec": {"interval": "10m", "chartRef": {"kind": "OCIRepository", "name": "podinfo"}, **spec},
    }


def test_groups_versions_plurals_and_short_names_are_fluxs() -> None:
    expected = {
        GitRepository: ("source.toolkit.fluxcd.io", "v1", "gitrepositories", ("gitrepo",)),
        OCIRepository: ("source.toolkit.fluxcd.io", "v1", "ocirepositories", ("ocirepo",)),
        HelmRepository: ("source.toolkit.fluxcd.io", "v1", "helmrepositories", ("helmrepo",)),
        HelmChart: ("source.toolkit.fluxcd.io", "v1", "helmcharts", ("hc",)),
        Bucket: ("source.toolkit.fluxcd.io", "v1", "buckets", ()),
        ExternalArtifact: ("source.toolkit.fluxcd.io", "v1", "externalartifacts", ("ea",)),
        ArtifactGenerator: ("source.extensions.fluxcd.io", "v1beta1", "artifactgenerators", ("ag",)),
        Kustomization: ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", ("ks",)),
        HelmRelease: ("helm.toolkit.fluxcd.io", "v2", "helmreleases", ("hr",)),
        Provider: ("notification.toolkit.fluxcd.io", "v1beta3", "providers", ()),
        Alert: ("notification.toolkit.fluxcd.io", "v1beta3", "alerts", ()),
        Receiver: ("notification.toolkit.fluxcd.io", "v1", "receivers", ()),
    }
    assert set(expected) == set(ALL_KINDS)
    for model, (group, version, plural, short_names) in expected.items():
        assert (model.group, model.version, model.plural, model.short_names) == (
            group, version, plural, short_names,
        )  # fmt: skip
    assert HelmRelease.api_versions() == (
        "helm.toolkit.fluxcd.io/v2", "helm.toolkit.fluxcd.io/v2beta2", "helm.toolkit.fluxcd.io/v2beta1",
    )  # fmt: skip


def test_wire_names_are_camel_case_and_attributes_snake_case() -> None:
    repo = GitRepository.from_dict(git_repository(secretRef={"name": "creds"}, recurseSubmodules=True))
    assert repo.spec.secret_ref is not None and repo.spec.secret_ref.name == "creds"
    assert repo.spec.recurse_submodules is True
    assert repo.to_dict()["spec"]["recurseSubmodules"] is True
    assert repo.metadata.generation == 3


def test_models_can_be_built_from_python_names() -> None:
    ks = Kustomization.model_validate(
        {
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": {
                "interval": "1m",
                "prune": False,
                "source_ref": {"kind": "GitRepository", "name": "repo"},
                "retry_interval": "30s",
            },
        }
    )
    assert ks.to_dict()["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "repo"}
    assert ks.to_dict()["spec"]["retryInterval"] == "30s"
    assert ks.api_version == "kustomize.toolkit.fluxcd.io/v1"
    assert ks.to_dict()["kind"] == "Kustomization"


def test_metadata_keeps_fields_it_does_not_model() -> None:
    doc = git_repository()
    doc["metadata"] |= {
        "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        "deletionTimestamp": "2026-01-01T00:00:00Z",
        "finalizers": ["finalizers.fluxcd.io"],
        "resourceVersion": "42",
        "uid": "0b7d",
    }
    repo = GitRepository.from_dict(doc)
    assert repo.metadata.deletion_timestamp == "2026-01-01T00:00:00Z"
    assert repo.metadata.finalizers == ["finalizers.fluxcd.io"]
    assert repo.metadata.resource_version == "42"
    assert repo.to_dict() == doc


def test_the_served_api_version_is_kept_and_others_rejected() -> None:
    beta = HelmRelease.from_dict(helm_release("helm.toolkit.fluxcd.io/v2beta1"))
    assert beta.api_version == "helm.toolkit.fluxcd.io/v2beta1"
    assert beta.storage_api_version() == "helm.toolkit.fluxcd.io/v2"
    with pytest.raises(ValidationError, match="apiVersion"):
        HelmRelease.from_dict(helm_release("helm.toolkit.fluxcd.io/v1"))
    with pytest.raises(ValidationError, match="kind"):
        GitRepository.from_dict({**git_repository(), "kind": "Bucket"})


def test_model_for_finds_kinds_by_api_version() -> None:
    assert model_for("helm.toolkit.fluxcd.io/v2beta2", "HelmRelease") is HelmRelease
    assert model_for("source.toolkit.fluxcd.io/v1beta2", "GitRepository") is None
    assert model_for("v1", "ConfigMap") is None
    with pytest.raises(ValueError, match="unknown kind"):
        load({"apiVersion": "v1", "kind": "ConfigMap"})


def test_what_the_runtime_needs_to_know_about_a_kind() -> None:
    assert GitRepository.has_interval() and GitRepository.has_suspend()
    assert not GitRepository.has_retry_interval()
    assert Kustomization.has_retry_interval()
    assert not Alert.has_interval() and Alert.has_suspend()
    assert Alert.status_model() is None and Provider.status_model() is None
    assert Receiver.status_model() is not None

    repo = GitRepository.from_dict(git_repository(interval="1m30s"))
    assert repo.interval_seconds() == 90
    assert repo.retry_interval_seconds() is None
    assert not repo.is_suspended()
    assert GitRepository.from_dict(git_repository(suspend=True)).is_suspended()

    assert Kustomization.from_dict(kustomization()).retry_interval_seconds() == 600
    assert Kustomization.from_dict(kustomization(retryInterval="2m")).retry_interval_seconds() == 120
    alert = Alert.from_dict(
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "a"},
            "spec": {
                "providerRef": {"name": "slack"},
                "eventSources": [{"kind": "Kustomization", "name": "*"}],
            },
        }
    )
    assert alert.interval_seconds() is None and alert.retry_interval_seconds() is None
    assert alert.spec.severity() == "info"


def test_kinds_with_optional_intervals_use_fluxs_defaults() -> None:
    helm_repo = HelmRepository.from_dict(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmRepository",
            "metadata": {"name": "r"},
            "spec": {"url": "https://charts.example.com"},
        }
    )
    assert helm_repo.interval_seconds() == 60
    receiver = Receiver.from_dict(
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1",
            "kind": "Receiver",
            "metadata": {"name": "r"},
            "spec": {
                "type": "generic",
                "secretRef": {"name": "token"},
                "resources": [{"kind": "GitRepository", "name": "x"}],
            },
        }
    )
    assert receiver.interval_seconds() == 600
    assert receiver.webhook_path("token") == "/hook/" + hashlib.sha256(b"tokenr").hexdigest()


def test_getters_apply_fluxs_defaults_for_unset_fields() -> None:
    repo = GitRepository.from_dict(git_repository())
    assert repo.spec.timeout is None  # the API server fills in the CRD default, not the model
    assert repo.spec.timeout_seconds() == 60
    assert "timeout" not in repo.to_dict()["spec"]

    ks = Kustomization.from_dict(kustomization())
    assert ks.spec.timeout_seconds() == 570  # interval minus 30s, like Flux
    assert Kustomization.from_dict(kustomization(interval="10s")).spec.timeout_seconds() == 30
    assert Kustomization.from_dict(kustomization(timeout="5s")).spec.timeout_seconds() == 30
    assert Kustomization.from_dict(kustomization(timeout="2m")).spec.timeout_seconds() == 120
    assert ks.spec.effective_deletion_policy() == "MirrorPrune"

    hr = HelmRelease.from_dict(helm_release())
    assert hr.spec.timeout_seconds() == 300
    assert hr.spec.effective_max_history() == 5
    assert hr.spec.use_persistent_client() is True
    assert hr.spec.effective_install().crds_policy() == "Create"
    assert hr.spec.effective_upgrade().crds_policy() == "Skip"
    assert hr.release_name() == "podinfo"
    assert hr.storage_namespace() == "apps"
    assert hr.spec.effective_drift_detection_mode() == "disabled"


def test_helm_remediation_defaults_follow_flux() -> None:
    hr = HelmRelease.from_dict(helm_release())
    install, upgrade = hr.spec.install_remediation(), hr.spec.upgrade_remediation()
    assert install.effective_retries() == 0 and not install.must_remediate_last_failure()
    assert install.effective_strategy() == "uninstall"
    assert upgrade.effective_strategy() == "rollback" and not upgrade.must_remediate_last_failure()
    assert install.retries_exhausted(1) and not install.retries_exhausted(0)

    hr = HelmRelease.from_dict(helm_release(upgrade={"remediation": {"retries": 3}}))
    upgrade = hr.spec.upgrade_remediation()
    assert upgrade.must_remediate_last_failure()  # defaults to true when retries > 0
    assert not upgrade.retries_exhausted(3) and upgrade.retries_exhausted(4)
    assert upgrade.must_ignore_test_failures(True)

    forever = HelmRelease.from_dict(helm_release(install={"remediation": {"retries": -1}}))
    assert not forever.spec.install_remediation().retries_exhausted(1000)


def test_helm_release_names_follow_flux() -> None:
    hr = HelmRelease.from_dict(helm_release(targetNamespace="prod"))
    assert hr.release_name() == "prod-podinfo"
    assert hr.release_namespace() == "prod"
    long_name = "a" * 60
    short = shorten_release_name(long_name)
    assert len(short) == 53 and short.startswith("a" * 40 + "-")
    assert shorten_release_name("podinfo") == "podinfo"
    assert HelmRelease.from_dict(helm_release(releaseName="custom")).release_name() == "custom"


def test_helm_release_needs_exactly_one_of_chart_and_chart_ref() -> None:
    doc = helm_release()
    del doc["spec"]["chartRef"]
    with pytest.raises(ValidationError, match="either chart or chartRef must be set"):
        HelmRelease.from_dict(doc)
    source_ref = {"kind": "HelmRepository", "name": "p"}
    doc["spec"]["chart"] = {"spec": {"chart": "podinfo", "sourceRef": source_ref}}
    hr = HelmRelease.from_dict(doc)
    assert hr.helm_chart_name() == "apps-podinfo"
    assert hr.helm_chart_namespace() == "apps"


def test_free_form_values_are_kept_as_they_are() -> None:
    values = {"a": {"b": [1, "two", None, {"c": True}]}, "empty": {}, "nothing": None}
    hr = HelmRelease.from_dict(helm_release(values=values))
    assert hr.spec.values == values
    assert hr.to_dict()["spec"]["values"] == values


@pytest.mark.parametrize(
    ("doc", "location"),
    [
        (git_repository(interval="5 minutes"), "spec.interval"),
        (git_repository(timeout="1d"), "spec.timeout"),
        (git_repository(url="git@github.com:org/repo.git"), "spec.url"),
        (git_repository(provider="gitlab"), "spec.provider"),
        (git_repository(verify={"mode": "HEAD"}), "spec.verify.secretRef"),
        (kustomization(sourceRef={"kind": "HelmRepository", "name": "x"}), "spec.sourceRef.kind"),
        (kustomization(deletionPolicy="Keep"), "spec.deletionPolicy"),
        (kustomization(targetNamespace="x" * 64), "spec.targetNamespace"),
        (kustomization(decryption={"provider": "vault"}), "spec.decryption.provider"),
        (helm_release(releaseName="r" * 54), "spec.releaseName"),
        (helm_release(install={"crds": "Always"}), "spec.install.crds"),
        (helm_release(driftDetection={"mode": "on"}), "spec.driftDetection.mode"),
        (helm_release(valuesFrom=[{"kind": "Pod", "name": "x"}]), "spec.valuesFrom.0.kind"),
    ],
)
def test_invalid_specs_are_rejected_with_their_location(doc: dict[str, Any], location: str) -> None:
    with pytest.raises(ValidationError) as error:
        load(doc)
    assert location in str(error.value)


def test_missing_required_fields_are_rejected() -> None:
    doc = git_repository()
    del doc["spec"]["interval"]
    with pytest.raises(ValidationError, match=r"spec\.interval"):
        load(doc)
    doc = kustomization()
    del doc["spec"]["prune"]
    with pytest.raises(ValidationError, match=r"spec\.prune"):
        load(doc)


def test_status_is_always_there_and_left_out_when_empty() -> None:
    repo = GitRepository.from_dict(git_repository())
    assert repo.status.artifact is None and repo.status.conditions == []
    assert "status" not in repo.to_dict()
    repo.status.conditions.append(
        Condition(
            type="Ready",
            status="True",
            reason="Succeeded",
            message="stored artifact for revision 'main@sha1:abc'",
            last_transition_time="2026-01-01T00:00:00Z",
        )
    )
    repo.status.observed_generation = 3
    repo.status.artifact = Artifact(
        path="gitrepository/default/podinfo/abc.tar.gz",
        url="http://source-controller/gitrepository/default/podinfo/abc.tar.gz",
        revision="main@sha1:abc",
        digest="sha256:0123abcd",
        last_update_time="2026-01-01T00:00:00Z",
        size=1024,
    )
    status = repo.to_dict()["status"]
    assert status["observedGeneration"] == 3
    assert status["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert status["artifact"]["lastUpdateTime"] == "2026-01-01T00:00:00Z"
    assert repo.status.is_ready()
    assert GitRepository.from_dict(repo.to_dict()).to_dict() == repo.to_dict()


def test_status_read_from_the_cluster_is_parsed() -> None:
    doc = kustomization()
    doc["status"] = {
        "observedGeneration": -1,
        "lastHandledReconcileAt": "2026-01-01T00:00:00Z",
        "lastAppliedRevision": "main@sha1:abc",
        "inventory": {"entries": [{"id": "default_podinfo_apps_Deployment", "v": "v1"}]},
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "BuildFailed",
                "message": "kustomize build failed",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 2,
            }
        ],
    }
    ks = Kustomization.from_dict(doc)
    assert ks.status.inventory is not None
    assert ks.status.inventory.entries[0].id == "default_podinfo_apps_Deployment"
    assert ks.status.get_condition("Ready") is not None and not ks.status.is_ready()
    assert ks.to_dict() == doc


def test_conditions_are_validated_like_metav1_condition() -> None:
    with pytest.raises(ValidationError, match="status"):
        Condition(type="Ready", status="Yes", reason="R", message="", last_transition_time="t")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="reason"):
        Condition(type="Ready", status="True", reason="Build failed", message="", last_transition_time="t")
    with pytest.raises(ValidationError, match="reason"):
        Condition(type="Ready", status="True", reason="", message="", last_transition_time="t")
    ok = Condition(type="Ready", status="False", reason="Failed", message="", last_transition_time="t")
    assert ok.to_wire() == {
        "type": "Ready",
        "status": "False",
        "reason": "Failed",
        "message": "",
        "lastTransitionTime": "t",
    }


def test_helm_release_status_written_by_flux_is_parsed() -> None:
    doc = helm_release()
    doc["status"] = {
        "observedGeneration": 2,
        "helmChart": "flux-system/apps-podinfo",
        "storageNamespace": "apps",
        "lastAttemptedReleaseAction": "upgrade",
        "upgradeFailures": 1,
        "history": [
            {
                "apiVersion": "helm.toolkit.fluxcd.io/v2",
                "digest": "sha256:abc",
                "name": "podinfo",
                "namespace": "apps",
                "version": 2,
                "status": "deployed",
                "chartName": "podinfo",
                "chartVersion": "6.5.4",
                "appVersion": "6.5.4",
                "configDigest": "sha256:def",
                "firstDeployed": "2026-01-01T00:00:00Z",
                "lastDeployed": "2026-01-01T00:05:00Z",
                "testHooks": {"podinfo-grpc-test-abc": {"phase": "Succeeded"}},
            }
        ],
    }
    hr = HelmRelease.from_dict(doc)
    assert hr.status.history is not None and hr.status.history[0].chart_version == "6.5.4"
    assert hr.active_remediation() == hr.spec.upgrade_remediation()
    assert hr.to_dict() == doc


def test_unknown_fields_from_newer_flux_versions_are_ignored() -> None:
    repo = GitRepository.from_dict(git_repository(someFutureField={"x": 1}))
    assert "someFutureField" not in repo.to_dict()["spec"]
