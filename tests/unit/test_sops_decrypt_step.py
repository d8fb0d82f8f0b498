"""The reconciler's decrypt step: generator sources in place, built Secrets, boundaries."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sops_fixtures import FIXTURES, PLAIN, SECRET_PLAINTEXTS, keyring

from tide.controllers.kustomize.decrypt import (
    DecryptionError,
    Keyring,
    decrypt_generator_sources,
    decrypt_resources,
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def build(tmp_path: Path) -> Path:
    root = tmp_path / "build"
    app = root / "apps" / "demo"
    _write(
        app / "kustomization.yaml",
        yaml.safe_dump(
            {
                "resources": ["secret.yaml", "../base", "https://example.com/remote.yaml"],
                "secretGenerator": [
                    {"name": "env", "envs": ["app.env"]},
                    {"name": "files", "files": ["config.json=app.json", "blob.bin"]},
                ],
            }
        ),
    )
    shutil.copy(FIXTURES / "age/secret.yaml", app / "secret.yaml")
    shutil.copy(FIXTURES / "age/app.env", app / "app.env")
    shutil.copy(FIXTURES / "age/app.json", app / "app.json")
    shutil.copy(FIXTURES / "age/blob.bin", app / "blob.bin")
    base = root / "apps" / "base"
    _write(
        base / "kustomization.yaml",
        yaml.safe_dump({"secretGenerator": [{"name": "o", "envs": ["../../../outside.env"]}]}),
    )
    shutil.copy(FIXTURES / "age/app.env", tmp_path / "outside.env")
    return root


def _secret(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def test_generator_sources_are_decrypted_in_place(build: Path) -> None:
    with keyring("age.agekey") as ring:
        decrypt_generator_sources(build, Path("apps/demo"), ring)
    app = build / "apps/demo"
    assert "DB_PASSWORD=env-password" in (app / "app.env").read_text()
    assert '"password": "json-password"' in (app / "app.json").read_text()
    assert (app / "blob.bin").read_bytes() == (PLAIN / "blob.bin").read_bytes()
    assert oct((app / "app.env").stat().st_mode & 0o777) == "0o600"
    # manifests are decrypted after the build, and nothing outside the build dir is touched
    assert "ENC[AES256_GCM" in (app / "secret.yaml").read_text()
    assert "ENC[AES256_GCM" in (build.parent / "outside.env").read_text()


def test_symlink_leaving_the_build_dir_is_ignored(build: Path) -> None:
    app = build / "apps/demo"
    (app / "app.env").unlink()
    (app / "app.env").symlink_to(build.parent / "outside.env")
    with keyring("age.agekey") as ring:
        decrypt_generator_sources(build, app, ring)
    assert "ENC[AES256_GCM" in (build.parent / "outside.env").read_text()


def test_kustomization_dir_outside_the_build_dir_is_refused(build: Path) -> None:
    with pytest.raises(DecryptionError, match="outside the build directory"):
        decrypt_generator_sources(build, Path("../"), Keyring())


def test_files_over_5_mib_are_refused(build: Path) -> None:
    app = build / "apps/demo"
    (app / "app.env").write_bytes(b"A=" + b"x" * (5 << 20) + b"\n")
    with keyring("age.agekey") as ring, pytest.raises(DecryptionError, match="exceeding limit"):
        decrypt_generator_sources(build, app, ring)


def test_generator_source_with_the_wrong_key_names_file_and_recipient(build: Path) -> None:
    recipient = (FIXTURES / "keys/age.recipient").read_text().strip()
    with keyring("age-other.agekey") as ring, pytest.raises(DecryptionError) as info:
        decrypt_generator_sources(build, Path("apps/demo"), ring)
    assert "apps/demo/" in str(info.value) and recipient in str(info.value)


def test_tampered_generator_source_is_a_mac_mismatch(build: Path) -> None:
    env = build / "apps/demo/app.env"
    env.write_text(env.read_text().replace("DB_USER=ENC[AES256_GCM,data:", "DB_USER=ENC[AES256_GCM,data:AA"))
    with keyring("age.agekey") as ring, pytest.raises(DecryptionError, match="MAC mismatch") as info:
        decrypt_generator_sources(build, Path("apps/demo"), ring)
    assert "env-password" not in str(info.value)


def _as_built(path: Path) -> dict[str, Any]:
    """The Secret as kustomize emits it: namespace set, a label added, keys reordered."""
    obj = _secret(path)
    obj["metadata"]["namespace"] = "apps"
    obj["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = "demo"
    return dict(sorted(obj.items()))


def test_built_secret_is_decrypted_after_its_source_was_verified(build: Path) -> None:
    with keyring("age.agekey") as ring:
        decrypt_generator_sources(build, Path("apps/demo"), ring)
        [out] = decrypt_resources([_as_built(build / "apps/demo/secret.yaml")], ring)
    assert "sops" not in out
    assert out["data"] == {"username": "YWRtaW4=", "password": "czNjcjN0LXBhc3N3b3Jk"}
    assert out["stringData"] == {"token": "plain-token-value", "port": "5432"}
    assert out["metadata"]["namespace"] == "apps"


def test_unchanged_secret_decrypts_without_a_source_pass() -> None:
    with keyring("age.agekey") as ring:
        [out] = decrypt_resources([_secret(FIXTURES / "age/secret.yaml")], ring)
    assert out["stringData"]["token"] == "plain-token-value"


def test_changed_secret_without_verified_source_is_a_mac_mismatch() -> None:
    with keyring("age.agekey") as ring, pytest.raises(DecryptionError, match="MAC mismatch") as info:
        decrypt_resources([_as_built(FIXTURES / "age/secret.yaml")], ring)
    assert "Secret 'apps/db-credentials'" in str(info.value)


def test_tampered_source_manifest_fails_before_the_build(build: Path) -> None:
    path = build / "apps/demo/secret.yaml"
    path.write_text(path.read_text().replace("name: db-credentials", "name: db-credentialz"))
    with keyring("age.agekey") as ring, pytest.raises(DecryptionError, match="MAC mismatch") as info:
        decrypt_generator_sources(build, Path("apps/demo"), ring)
    assert "apps/demo/secret.yaml" in str(info.value)
    for plain in SECRET_PLAINTEXTS:
        assert plain not in str(info.value)


def test_directory_without_kustomization_file_is_scanned(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "pgp/secret.yaml", tmp_path / "secret.yaml")
    with keyring("pgp.asc") as ring:
        decrypt_generator_sources(tmp_path, tmp_path, ring)
        assert len(ring.verified_macs) == 1
        [out] = decrypt_resources([_as_built(tmp_path / "secret.yaml")], ring)
    assert out["stringData"]["token"] == "plain-token-value"


def test_multidoc_secrets_each_decrypt(tmp_path: Path) -> None:
    # one MAC covers every document of the file: it is checked on the source file
    shutil.copy(FIXTURES / "age/multidoc.yaml", tmp_path / "secrets.yaml")
    _write(tmp_path / "kustomization.yaml", "resources: [secrets.yaml]\n")
    docs = list(yaml.safe_load_all((FIXTURES / "age/multidoc.yaml").read_text()))
    with keyring("age.agekey") as ring:
        with pytest.raises(DecryptionError, match="MAC mismatch"):
            decrypt_resources(docs, ring)
        decrypt_generator_sources(tmp_path, tmp_path, ring)
        first, second = decrypt_resources(docs, ring)
    assert first["stringData"]["value"] == "first-secret" and second["stringData"]["value"] == "second-secret"


def test_decrypt_disabled_annotation_leaves_the_object() -> None:
    obj = _secret(FIXTURES / "age/secret.yaml")
    obj["metadata"]["annotations"] = {"kustomize.toolkit.fluxcd.io/decrypt": "disabled"}
    with keyring("age.agekey") as ring:
        assert decrypt_resources([obj], ring) == [obj]


def test_encrypted_secret_without_decryption_config() -> None:
    with pytest.raises(DecryptionError, match="configuring decryption is required"):
        decrypt_resources([_secret(FIXTURES / "age/secret.yaml")], Keyring())


def test_any_kind_with_sops_metadata_is_decrypted_when_configured() -> None:
    configmap = _secret(FIXTURES / "age/configmap.yaml")
    with keyring("age.agekey") as ring:
        [out] = decrypt_resources([configmap], ring)
    assert out["data"] == {"api_url": "https://api.example.com", "feature_flag": "on"} and "sops" not in out
    # without spec.decryption only an encrypted Secret is an error (Flux's IsEncryptedSecret)
    assert decrypt_resources([configmap], Keyring()) == [configmap]


def test_other_objects_pass_through() -> None:
    objs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}]
    assert decrypt_resources(objs, Keyring()) == objs


def test_generated_secret_data_holding_encrypted_documents() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "gen", "namespace": "apps"},
        "data": {
            "app.env": base64.b64encode((FIXTURES / "age/app.env").read_bytes()).decode(),
            "plain": base64.b64encode(b"hello").decode(),
        },
    }
    with keyring("age.agekey") as ring:
        [out] = decrypt_resources([obj], ring)
    assert b"DB_PASSWORD=env-password" in base64.b64decode(out["data"]["app.env"])
    assert out["data"]["plain"] == obj["data"]["plain"]
