"""Tampered documents, wrong and missing keys are rejected, and errors never carry plaintext."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sops_fixtures import FIXTURES, SECRET_PLAINTEXTS, keyring

from tide.controllers.kustomize.sops import (
    DecryptionError,
    Format,
    Keyring,
    MacMismatchError,
    decrypt_bytes,
)

SECRET = (FIXTURES / "age/secret.yaml").read_text()


@pytest.fixture(scope="module")
def age_ring() -> Iterator[Keyring]:
    with keyring("age.agekey") as ring:
        yield ring


def _flip_data(text: str, field: str) -> str:
    """Change one character of a value's ciphertext, keeping it valid base64."""
    match = re.search(rf"({field}: ENC\[AES256_GCM,data:)(.)", text)
    assert match
    new = "A" if match.group(2) != "A" else "B"
    return text[: match.start(2)] + new + text[match.end(2) :]


def _value(text: str, field: str) -> str:
    match = re.search(rf"{field}: (ENC\[[^\]]+\])", text)
    assert match
    return match.group(1)


def _decrypt(text: str, ring: Keyring) -> bytes:
    return decrypt_bytes(text.encode(), Format.YAML, ring, name="secret.yaml")


def _assert_clean(error: Exception) -> None:
    for plain in SECRET_PLAINTEXTS:
        assert plain not in str(error)


def test_untouched_file_decrypts(age_ring: Keyring) -> None:
    assert b"plain-token-value" in _decrypt(SECRET, age_ring)


def test_changed_encrypted_value_is_a_mac_mismatch(age_ring: Keyring) -> None:
    with pytest.raises(MacMismatchError, match="MAC mismatch") as info:
        _decrypt(_flip_data(SECRET, "password"), age_ring)
    assert "data:password" in str(info.value)
    _assert_clean(info.value)


def test_values_swapped_between_keys_fail_authentication(age_ring: Keyring) -> None:
    user, password = _value(SECRET, "username"), _value(SECRET, "password")
    swapped = SECRET.replace(user, "@U@").replace(password, user).replace("@U@", password)
    with pytest.raises(MacMismatchError, match="MAC mismatch") as info:
        _decrypt(swapped, age_ring)
    _assert_clean(info.value)


def test_changed_unencrypted_value_is_a_mac_mismatch(age_ring: Keyring) -> None:
    with pytest.raises(MacMismatchError, match="MAC mismatch") as info:
        _decrypt(SECRET.replace("name: db-credentials", "name: db-credentialz"), age_ring)
    assert "secret.yaml" in str(info.value)
    _assert_clean(info.value)


def test_removed_value_is_a_mac_mismatch(age_ring: Keyring) -> None:
    lines = [line for line in SECRET.splitlines(keepends=True) if not line.lstrip().startswith("token:")]
    with pytest.raises(MacMismatchError, match="MAC mismatch"):
        _decrypt("".join(lines), age_ring)


def test_changed_mac_is_a_mac_mismatch(age_ring: Keyring) -> None:
    with pytest.raises(MacMismatchError, match="MAC mismatch") as info:
        _decrypt(_flip_data(SECRET, "mac"), age_ring)
    _assert_clean(info.value)


def test_changed_lastmodified_is_a_mac_mismatch(age_ring: Keyring) -> None:
    tampered = re.sub(r'lastmodified: "(\d{4})', lambda m: f'lastmodified: "{int(m.group(1)) - 1}', SECRET)
    assert tampered != SECRET
    with pytest.raises(MacMismatchError, match="MAC mismatch"):
        _decrypt(tampered, age_ring)


def test_mac_only_encrypted_ignores_clear_values_but_not_encrypted_ones(age_ring: Keyring) -> None:
    text = (FIXTURES / "rules/mac-only-encrypted.yaml").read_text()
    assert b"db-credentialz" in _decrypt(
        text.replace("name: db-credentials", "name: db-credentialz"), age_ring
    )
    with pytest.raises(MacMismatchError, match="MAC mismatch"):
        _decrypt(_flip_data(text, "token"), age_ring)
    with pytest.raises(MacMismatchError, match="MAC mismatch"):
        _decrypt(text.replace("mac_only_encrypted: true", "mac_only_encrypted: false"), age_ring)


@pytest.mark.parametrize("fixture", ["age/app.env", "age/app.ini", "age/app.json"])
def test_tampering_other_formats(fixture: str, age_ring: Keyring) -> None:
    text = (FIXTURES / fixture).read_text()
    tampered = re.sub(
        r"(ENC\[AES256_GCM,data:)(.)",
        lambda m: m.group(1) + ("A" if m.group(2) != "A" else "B"),
        text,
        count=1,
    )
    fmt = {"env": Format.DOTENV, "ini": Format.INI, "json": Format.JSON}[fixture.rsplit(".", 1)[1]]
    with pytest.raises(MacMismatchError, match="MAC mismatch"):
        decrypt_bytes(tampered.encode(), fmt, age_ring, name=fixture)


def test_wrong_age_key_names_the_recipient_needed() -> None:
    recipient = (FIXTURES / "keys/age.recipient").read_text().strip()
    with keyring("age-other.agekey") as ring, pytest.raises(DecryptionError) as info:
        _decrypt(SECRET, ring)
    assert not isinstance(info.value, MacMismatchError)
    assert recipient in str(info.value) and "secret.yaml" in str(info.value)
    assert "no matching age identity" in str(info.value)


def test_wrong_pgp_key_names_the_fingerprint_needed() -> None:
    fingerprint = (FIXTURES / "keys/pgp.fingerprint").read_text().strip()
    with keyring("pgp-other.asc") as ring, pytest.raises(DecryptionError) as info:
        decrypt_bytes((FIXTURES / "pgp/secret.yaml").read_bytes(), Format.YAML, ring, name="pgp/secret.yaml")
    assert fingerprint in str(info.value) and "not in the decryption Secret" in str(info.value)


def test_missing_keys_name_what_was_needed() -> None:
    fingerprint = (FIXTURES / "keys/pgp.fingerprint").read_text().strip()
    with pytest.raises(DecryptionError) as info:
        decrypt_bytes((FIXTURES / "pgp/app.env").read_bytes(), Format.DOTENV, Keyring(), name="pgp/app.env")
    assert fingerprint in str(info.value) and "no PGP private key" in str(info.value)


def test_shamir_with_one_group_open_is_not_enough() -> None:
    with keyring("age2.agekey") as ring, pytest.raises(DecryptionError) as info:
        decrypt_bytes((FIXTURES / "groups/shamir-2-of-3.yaml").read_bytes(), Format.YAML, ring, name="s")
    message = str(info.value)
    assert "1 of 3 key groups opened, 2 needed" in message
    assert (FIXTURES / "keys/age.recipient").read_text().strip() in message


def test_two_groups_need_both() -> None:
    with (
        keyring("age.agekey") as ring,
        pytest.raises(DecryptionError, match="1 of 2 key groups opened, 2 needed"),
    ):
        decrypt_bytes((FIXTURES / "groups/two-groups.yaml").read_bytes(), Format.YAML, ring, name="g")


def test_document_without_metadata_is_refused(age_ring: Keyring) -> None:
    with pytest.raises(DecryptionError, match="sops metadata not found"):
        _decrypt((FIXTURES / "plain/secret.yaml").read_text(), age_ring)


def test_plain_value_where_encryption_is_expected_is_refused(age_ring: Keyring) -> None:
    tampered = SECRET.replace(_value(SECRET, "password"), "czNjcjN0LXBhc3N3b3Jk")
    with pytest.raises(DecryptionError) as info:
        _decrypt(tampered, age_ring)
    _assert_clean(info.value)
