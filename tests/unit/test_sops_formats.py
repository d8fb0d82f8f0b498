"""Every committed fixture (made by the real sops) decrypts to its plaintext, MAC verified."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sops_fixtures import FIXTURES, PLAIN, keyring, parse

from tide.controllers.kustomize.sops import DecryptionError, Format, Keyring, decrypt_bytes, format_for_path

# fixture -> the plaintext it was made from (see tests/fixtures/sops/make.sh)
CASES = {
    "age/secret.yaml": "secret.yaml",
    "age/values.yaml": "values.yaml",
    "age/yaml-types.yaml": "yaml-types.yaml",
    "rules/yaml-types-unencrypted.yaml": "yaml-types.yaml",
    "age/multidoc.yaml": "multidoc.yaml",
    "age/configmap.yaml": "configmap.yaml",
    "age/app.json": "app.json",
    "age/app.env": "app.env",
    "age/app.ini": "app.ini",
    "age/blob.bin": "blob.bin",
    "pgp/secret.yaml": "secret.yaml",
    "pgp/app.env": "app.env",
    "pgp/app.json": "app.json",
    "rules/encrypted-suffix.yaml": "suffixes.yaml",
    "rules/unencrypted-suffix.yaml": "suffixes.yaml",
    "rules/unencrypted-regex.yaml": "suffixes.yaml",
    "rules/encrypted-regex.yaml": "suffixes.yaml",
    "rules/mac-only-encrypted.yaml": "secret.yaml",
    "groups/two-groups.yaml": "secret.yaml",
    "groups/shamir-2-of-3.yaml": "secret.yaml",
    "groups/shamir-2-of-3.json": "app.json",
    "groups/age-or-pgp.yaml": "secret.yaml",
    "groups/two-age-groups.ini": "app.ini",
}


@pytest.fixture(scope="module")
def all_keys() -> Iterator[Keyring]:
    with keyring("age.agekey", "age2.agekey", "pgp.asc") as ring:
        yield ring


def test_every_fixture_is_covered() -> None:
    made = {
        str(p.relative_to(FIXTURES))
        for d in ("age", "pgp", "rules", "groups")
        for p in (FIXTURES / d).iterdir()
    }
    assert made == set(CASES)


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_fixture_decrypts_to_its_plaintext(fixture: str, all_keys: Keyring) -> None:
    fmt = Format.BINARY if fixture.endswith(".bin") else format_for_path(fixture)
    out = decrypt_bytes((FIXTURES / fixture).read_bytes(), fmt, all_keys, name=fixture)
    plain = (PLAIN / CASES[fixture]).read_bytes()
    assert parse(out, fmt) == parse(plain, fmt)


def test_yaml_scalars_keep_their_types(all_keys: Keyring) -> None:
    out = decrypt_bytes((FIXTURES / "age/values.yaml").read_bytes(), Format.YAML, all_keys, name="values")
    [doc] = parse(out, Format.YAML)  # type: ignore[misc]
    service = doc["service"]
    assert service["replicas"] == 3 and service["ratio"] == 0.75 and service["big"] == 1000.0
    assert service["enabled"] is True and service["disabled"] is False
    assert service["empty"] == "" and service["nothing"] is None and service["octal"] == 15
    assert doc["password_unencrypted"] == "visible"
    assert doc["multiline"] == "line one\nline two\n"


def test_yaml_v3_types_and_timestamps(all_keys: Keyring) -> None:
    # the MAC covers these values as Go sees them; the unencrypted variant checks that MAC
    for fixture in ("age/yaml-types.yaml", "rules/yaml-types-unencrypted.yaml"):
        out = decrypt_bytes((FIXTURES / fixture).read_bytes(), Format.YAML, all_keys, name=fixture)
        [doc] = parse(out, Format.YAML)  # type: ignore[misc]
        assert doc["ts"] == "2001-12-14T21:59:43.1-05:00" and doc["date"] == "2002-12-14T00:00:00Z"
        assert (doc["oct_old"], doc["hex"], doc["bin"], doc["under"], doc["eight"]) == (15, 31, 5, 1000, 8.0)
        assert doc["yes_str"] == "yes" and doc["single"] == "true" and doc["quoted"] == "12"
        assert doc["derived"]["<<"] == {"a": 1, "b": "two"} and doc["alias"] == {"a": 1, "b": "two"}


def test_binary_is_byte_exact(all_keys: Keyring) -> None:
    out = decrypt_bytes((FIXTURES / "age/blob.bin").read_bytes(), Format.BINARY, all_keys, name="blob")
    assert out == (PLAIN / "blob.bin").read_bytes()


def test_rules_leave_the_right_values_in_clear() -> None:
    text = (FIXTURES / "rules/encrypted-suffix.yaml").read_text()
    assert "api_plain: not-secret" in text and "api_secret: ENC[" in text
    text = (FIXTURES / "rules/unencrypted-regex.yaml").read_text()
    assert "name: demo" in text and "host_plain: example.com" in text and "token_secret: ENC[" in text
    text = (FIXTURES / "rules/mac-only-encrypted.yaml").read_text()
    assert "mac_only_encrypted: true" in text


@pytest.mark.parametrize(
    "names",
    [("age.agekey", "age2.agekey"), ("age.agekey", "pgp.asc"), ("age2.agekey", "pgp.asc")],
    ids=["age+age2", "age+pgp", "age2+pgp"],
)
def test_shamir_any_two_of_three_groups(names: tuple[str, ...]) -> None:
    with keyring(*names) as ring:
        out = decrypt_bytes(
            (FIXTURES / "groups/shamir-2-of-3.yaml").read_bytes(), Format.YAML, ring, name="shamir"
        )
    assert parse(out, Format.YAML) == parse((PLAIN / "secret.yaml").read_bytes(), Format.YAML)


def test_ini_with_key_groups_needs_both() -> None:
    # flattened key_groups metadata, and sops' "2.000000" threshold in INI
    data = (FIXTURES / "groups/two-age-groups.ini").read_bytes()
    assert b"shamir_threshold" in data and b"key_groups__list_1__map_age" in data
    with keyring("age.agekey", "age2.agekey") as both:
        assert b"ini-password" in decrypt_bytes(data, Format.INI, both, name="ini")
    with keyring("age2.agekey") as one, pytest.raises(DecryptionError, match="1 of 2 key groups opened"):
        decrypt_bytes(data, Format.INI, one, name="ini")


def test_one_group_with_age_or_pgp_opens_with_either() -> None:
    path = FIXTURES / "groups/age-or-pgp.yaml"
    for name in ("age.agekey", "pgp.asc"):
        with keyring(name) as ring:
            assert b"db-credentials" in decrypt_bytes(path.read_bytes(), Format.YAML, ring, name="x")


def test_pgp_home_is_removed_on_close(tmp_path: Path) -> None:
    ring = keyring("pgp.asc")
    decrypt_bytes((FIXTURES / "pgp/app.env").read_bytes(), Format.DOTENV, ring, name="env")
    home = ring._gnupg_home
    assert home is not None and Path(home).is_dir()
    assert oct(Path(home).parent.stat().st_mode & 0o777) == "0o700"
    ring.close()
    assert not Path(home).parent.exists()
