"""SOPS: a Kustomization decrypts Secrets and generator sources natively, and refuses bad input.

Encrypted files are the committed fixtures made by the real sops (tests/fixtures/sops); keys
are given as Flux names them in the decryption Secret (``*.asc``, ``*.agekey``).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.fixtures.kustomize import get_obj, git_source, kustomization, wait_ks, wait_until
from e2e.fixtures.source import apply, condition, request_reconcile, secret

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sops"
PLAINTEXTS = ["czNjcjN0LXBhc3N3b3Jk", "plain-token-value", "env-password"]


def fixture(path: str) -> str:
    return (FIXTURES / path).read_text()


def key(name: str) -> bytes:
    return (FIXTURES / "keys" / name).read_bytes()


def expected_secret_data() -> dict[str, str]:
    plain = yaml.safe_load(fixture("plain/secret.yaml"))
    data = dict(plain["data"])
    data.update({k: base64.b64encode(v.encode()).decode() for k, v in plain["stringData"].items()})
    return data


def configmap(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: '{value}'\n"


def sops_kustomization(namespace: str, secret_ref: str | None = "sops-keys", **spec: Any) -> dict[str, Any]:
    """The seed's SOPS Kustomization (e2e/examples/seed/kustomization-sops.yaml), in the test namespace."""
    decryption: dict[str, Any] = {"provider": "sops"}
    if secret_ref:
        decryption["secretRef"] = {"name": secret_ref}
    return kustomization(
        "secrets", path="./secrets/production", interval="5s", targetNamespace=namespace,
        decryption=decryption, **spec,
    )  # fmt: skip


def assert_no_plaintext(text: str) -> None:
    for plain in PLAINTEXTS:
        assert plain not in text


@pytest.mark.parametrize(
    ("flavour", "secret_key", "key_file"),
    [("pgp", "sops.asc", "pgp.asc"), ("age", "identity.agekey", "age.agekey")],
)
def test_encrypted_secret_is_applied_decrypted(  # type: ignore[no-untyped-def]
    git_server, flux_controllers, kubectl, namespace, flavour: str, secret_key: str, key_file: str
) -> None:
    repo = git_server.create_repo(f"sops-{flavour}-{namespace}", {
        "secrets/production/kustomization.yaml": "resources:\n- db-credentials.yaml\n",
        "secrets/production/db-credentials.yaml": fixture(f"{flavour}/secret.yaml"),
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, secret("sops-keys", {secret_key: key(key_file)}),
          git_source("repo", repo.public_http_url), sops_kustomization(namespace))  # fmt: skip
    revision = f"main@sha1:{repo.head()}"
    ks = wait_ks(kubectl, namespace, "secrets", revision=revision)
    assert condition(ks, "Ready")["message"] == f"Applied revision: {revision}"

    applied = get_obj(kubectl, namespace, "secret", "db-credentials")
    assert applied["data"] == expected_secret_data()
    assert "sops" not in applied
    assert applied["metadata"]["labels"]["app"] == "podinfo"


def test_secret_generator_reads_an_encrypted_env_file(  # type: ignore[no-untyped-def]
    git_server, flux_controllers, kubectl, namespace
) -> None:
    repo = git_server.create_repo(f"sops-env-{namespace}", {
        "secrets/production/kustomization.yaml": yaml.safe_dump({
            "secretGenerator": [
                {"name": "app-env", "envs": ["app.env"]},
                {"name": "app-config", "files": ["config.json=app.json"]},
            ],
            "generatorOptions": {"disableNameSuffixHash": True},
        }),
        "secrets/production/app.env": fixture("age/app.env"),
        "secrets/production/app.json": fixture("pgp/app.json"),
    })  # fmt: skip
    flux_controllers()
    keys = secret("sops-keys", {"identity.agekey": key("age.agekey"), "sops.asc": key("pgp.asc")})
    apply(kubectl, namespace, keys, git_source("repo", repo.public_http_url), sops_kustomization(namespace))
    wait_ks(kubectl, namespace, "secrets", revision=f"main@sha1:{repo.head()}")

    env = get_obj(kubectl, namespace, "secret", "app-env")["data"]
    decoded = {k: base64.b64decode(v).decode() for k, v in env.items()}
    assert decoded["DB_USER"] == "app" and decoded["DB_PASSWORD"] == "env-password"
    config = get_obj(kubectl, namespace, "secret", "app-config")["data"]
    assert json.loads(base64.b64decode(config["config.json"]))["database"]["password"] == "json-password"


def _tamper(text: str) -> str:
    match = re.search(r"(password: ENC\[AES256_GCM,data:)(.)", text)
    assert match
    return text[: match.start(2)] + ("A" if match.group(2) != "A" else "B") + text[match.end(2) :]


def test_bad_input_keeps_the_last_good_state(  # type: ignore[no-untyped-def]
    git_server, flux_controllers, kubectl, namespace
) -> None:
    good = fixture("age/secret.yaml")
    repo = git_server.create_repo(f"sops-bad-{namespace}", {
        "secrets/production/kustomization.yaml": "resources:\n- db-credentials.yaml\n- settings.yaml\n",
        "secrets/production/db-credentials.yaml": good,
        "secrets/production/settings.yaml": configmap("settings", "v1"),
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, secret("sops-keys", {"identity.agekey": key("age.agekey")}),
          git_source("repo", repo.public_http_url, interval="3s"), sops_kustomization(namespace))  # fmt: skip
    good_revision = f"main@sha1:{repo.head()}"
    wait_ks(kubectl, namespace, "secrets", revision=good_revision)
    expected = expected_secret_data()

    def last_good_state_stays() -> None:
        assert get_obj(kubectl, namespace, "secret", "db-credentials")["data"] == expected
        assert get_obj(kubectl, namespace, "configmap", "settings")["data"] == {"value": "v1"}
        ks = get_obj(kubectl, namespace, "kustomization", "secrets")
        assert ks["status"]["lastAppliedRevision"] == good_revision
        assert_no_plaintext(json.dumps(ks["status"]))

    # 1. a tampered value: MAC mismatch, and nothing of this revision is applied (not even the ConfigMap)
    repo.commit({
        "secrets/production/db-credentials.yaml": _tamper(good),
        "secrets/production/settings.yaml": configmap("settings", "v2"),
    })  # fmt: skip
    request_reconcile(kubectl, namespace, "repo")
    ks = wait_ks(kubectl, namespace, "secrets", status="False", contains="MAC mismatch",
                 revision=f"main@sha1:{repo.head()}")  # fmt: skip
    assert "db-credentials.yaml" in condition(ks, "Ready")["message"]
    last_good_state_stays()

    # 2. the wrong key: the message names the age recipient the file needs
    # The key first: a good commit seen with the old key would be applied, and rightly so.
    apply(kubectl, namespace, secret("sops-keys", {"identity.agekey": key("age-other.agekey")}))
    repo.commit({"secrets/production/db-credentials.yaml": good})
    request_reconcile(kubectl, namespace, "repo")
    recipient = fixture("keys/age.recipient").strip()
    ks = wait_ks(kubectl, namespace, "secrets", status="False", contains=recipient,
                 revision=f"main@sha1:{repo.head()}")  # fmt: skip
    assert "no matching age identity" in condition(ks, "Ready")["message"]
    last_good_state_stays()

    # 3. the key Secret is missing
    kubectl("delete", "secret", "sops-keys", "-n", namespace)
    request_reconcile(kubectl, namespace, "secrets", kind="kustomization")
    wait_ks(kubectl, namespace, "secrets", status="False", contains="sops-keys")
    last_good_state_stays()

    # Events carry the reasons, never plaintext
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "MAC mismatch" in events
    assert_no_plaintext(events)

    # 4. the right key again: the new revision is applied
    apply(kubectl, namespace, secret("sops-keys", {"identity.agekey": key("age.agekey")}))
    request_reconcile(kubectl, namespace, "secrets", kind="kustomization")
    wait_ks(kubectl, namespace, "secrets", revision=f"main@sha1:{repo.head()}")
    wait_until(lambda: get_obj(kubectl, namespace, "configmap", "settings")["data"] == {"value": "v2"}, 30,
               "the fixed revision applied")  # fmt: skip


def test_encrypted_secret_without_decryption_is_refused(  # type: ignore[no-untyped-def]
    git_server, flux_controllers, kubectl, namespace
) -> None:
    repo = git_server.create_repo(f"sops-none-{namespace}", {
        "secrets/production/db-credentials.yaml": fixture("age/secret.yaml"),
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("secrets", path="./secrets/production", targetNamespace=namespace))  # fmt: skip
    wait_ks(kubectl, namespace, "secrets", status="False", contains="configuring decryption is required")
    assert not get_obj(kubectl, namespace, "secret", "db-credentials")
