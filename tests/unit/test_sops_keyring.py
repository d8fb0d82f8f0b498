"""Keys from a decryption Secret as Flux names them; KMS kinds recognised and refused clearly."""

from __future__ import annotations

import datetime

import pytest
from sops_fixtures import FIXTURES, key_data, keyring

from tide.controllers.kustomize.sops import DecryptionError, Format, Keyring, decrypt_bytes, decrypt_mapping
from tide.controllers.kustomize.sops.cipher import go_float, go_time, go_time_from_datetime, mac_bytes
from tide.controllers.kustomize.sops.metadata import metadata_from_mapping, unflatten_metadata
from tide.controllers.kustomize.sops.shamir import combine, split


def test_secret_key_names_are_recognised() -> None:
    data = {
        **key_data("age.agekey", "pgp.asc"),
        "identity.agekey": (FIXTURES / "keys/age2.agekey").read_bytes(),
        "sops.vault-token": b"  s.token\n",
        "sops.aws-kms": b"aws_access_key_id: x\n",
        "sops.gcp-kms": b"{}",
        "sops.azure-kv": b"tenantId: t\n",
        "unrelated": b"ignored",
    }
    ring = Keyring.from_secret_data(data)
    assert len(ring.age_identities) == 2
    assert ring.vault_token == "s.token"
    assert ring.kms_credentials == {"sops.aws-kms", "sops.gcp-kms", "sops.azure-kv"}
    assert ring.configured
    ring.close()


def test_agekey_with_comments_and_several_identities() -> None:
    text = (
        (FIXTURES / "keys/age.agekey").read_text()
        + "\n# second\n"
        + (FIXTURES / "keys/age2.agekey").read_text()
    )
    ring = Keyring.from_secret_data({"all.agekey": text.encode()})
    assert len(ring.age_identities) == 2


def test_broken_agekey_names_the_secret_key_not_its_content() -> None:
    with pytest.raises(DecryptionError, match=r"'bad\.agekey'") as info:
        Keyring.from_secret_data({"bad.agekey": b"AGE-SECRET-KEY-NOT-A-KEY-supersecret"})
    assert "supersecret" not in str(info.value)


def test_empty_keyring_is_not_configured() -> None:
    assert not Keyring().configured
    assert Keyring.from_secret_data({}).configured


def test_controller_age_secret_reads_only_agekeys() -> None:
    ring = Keyring.from_age_secret_data({**key_data("age.agekey", "pgp.asc"), "sops.vault-token": b"t"})
    assert len(ring.age_identities) == 1 and ring.vault_token is None and ring.configured
    assert b"db-credentials" in decrypt_bytes(
        (FIXTURES / "age/secret.yaml").read_bytes(), Format.YAML, ring, name="s"
    )


def test_merged_adds_the_controller_age_secret() -> None:
    ring = keyring("pgp.asc").merged(keyring("age.agekey"))
    assert len(ring.age_identities) == 1
    assert b"db-credentials" in decrypt_bytes(
        (FIXTURES / "age/secret.yaml").read_bytes(), Format.YAML, ring, name="s"
    )
    ring.close()


def _kms_document(kind: str, entry: dict[str, str]) -> dict[str, object]:
    return {
        "data": {"password": f"ENC[AES256_GCM,data:AAAA,iv:{'A' * 43}=,tag:{'A' * 22}==,type:str]"},
        "sops": {
            kind: [{**entry, "enc": "opaque"}],
            "lastmodified": "2024-01-01T00:00:00Z",
            "mac": "ENC[x]",
            "version": "3.10.2",
        },
    }


@pytest.mark.parametrize(
    ("kind", "entry", "secret_key", "shown"),
    [
        (
            "kms",
            {"arn": "arn:aws:kms:eu-west-1:1:key/abc"},
            "sops.aws-kms",
            "arn:aws:kms:eu-west-1:1:key/abc",
        ),
        (
            "gcp_kms",
            {"resource_id": "projects/p/keyRings/r/cryptoKeys/k"},
            "sops.gcp-kms",
            "projects/p/keyRings/r",
        ),
        (
            "azure_kv",
            {"vault_url": "https://v.vault.azure.net", "name": "k", "version": "1"},
            "sops.azure-kv",
            "v.vault.azure.net",
        ),
        (
            "hc_vault",
            {"vault_address": "https://vault:8200", "engine_path": "transit", "key_name": "k"},
            "sops.vault-token",
            "https://vault:8200",
        ),
    ],
)
def test_kms_keys_fail_with_a_clear_message(
    kind: str, entry: dict[str, str], secret_key: str, shown: str
) -> None:
    without = Keyring.from_secret_data({})
    with pytest.raises(DecryptionError, match="cannot get the sops data key") as info:
        decrypt_mapping(_kms_document(kind, entry), without, name="Secret 'ns/x'")
    assert shown in str(info.value) and secret_key in str(info.value)
    with_credentials = Keyring.from_secret_data({secret_key: b"x"})
    with pytest.raises(DecryptionError, match="not reachable from Tide"):
        decrypt_mapping(_kms_document(kind, entry), with_credentials, name="Secret 'ns/x'")


def test_go_float_formatting_matches_strconv() -> None:
    assert [go_float(v) for v in (1.0, 0.75, 1e3, 1e21, 1.5e-7, -0.0, 2.5)] == [
        "1",
        "0.75",
        "1000",
        "1000000000000000000000",
        "0.00000015",
        "-0",
        "2.5",
    ]
    assert mac_bytes(True) == b"True" and mac_bytes(False) == b"False" and mac_bytes(3) == b"3"


def test_shamir_round_trip_and_threshold() -> None:
    secret = bytes(range(32))
    parts = split(secret, 3, 2, bytes(range(100, 132)), [7, 42, 255])
    assert combine(parts[:2]) == secret and combine(parts[1:]) == secret and combine(parts) == secret
    with pytest.raises(DecryptionError):
        combine(parts[:1])


def test_flattened_metadata_unflattens() -> None:
    flat = {
        "key_groups__list_0__map_age__list_0__map_recipient": "age1x",
        "key_groups__list_0__map_age__list_0__map_enc": "line1\\nline2",
        "key_groups__list_1__map_pgp__list_0__map_fp": "FP",
        "key_groups__list_1__map_pgp__list_0__map_enc": "pgp",
        "shamir_threshold": "2",
        "mac_only_encrypted": "true",
        "lastmodified": "2024-01-01T00:00:00Z",
        "mac": "ENC[x]",
    }
    raw = unflatten_metadata(flat)
    assert raw["key_groups"][0]["age"][0]["enc"] == "line1\nline2"
    meta = metadata_from_mapping(raw)
    assert [[k.kind for k in g] for g in meta.key_groups] == [["age"], ["pgp"]]
    assert meta.shamir_threshold == 2 and meta.mac_only_encrypted


def test_more_than_one_rule_is_refused() -> None:
    raw = {"age": [{"recipient": "a", "enc": "e"}], "mac": "m", "lastmodified": "t",
           "encrypted_regex": "x", "unencrypted_suffix": "_u"}  # fmt: skip
    with pytest.raises(DecryptionError, match="more than one"):
        metadata_from_mapping(raw)


def test_timestamps_as_go_writes_them() -> None:
    assert go_time("2001-12-14t21:59:43.10-05:00") == "2001-12-14T21:59:43.1-05:00"
    assert go_time("2002-12-14") == "2002-12-14T00:00:00Z"
    assert go_time("2002-1-2 3:04:05") == "2002-01-02T03:04:05Z"
    assert go_time("2002-12-14T01:02:03+00:00") == "2002-12-14T01:02:03Z"
    assert go_time("2002-12-14T01:02:03") is None  # "T" without a zone is a string for yaml.v3
    assert go_time("2002-13-14") is None and go_time("not a date") is None
    aware = datetime.datetime(
        2024, 5, 6, 7, 8, 9, 120000, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    assert go_time_from_datetime(aware) == "2024-05-06T07:08:09.12+02:00"
    assert go_time_from_datetime(datetime.date(2024, 5, 6)) == "2024-05-06T00:00:00Z"


def test_unusable_asc_names_the_secret_key() -> None:
    ring = Keyring.from_secret_data({"broken.asc": b"-----BEGIN PGP PRIVATE KEY BLOCK-----\nnope\n"})
    with pytest.raises(DecryptionError, match=r"key 'broken\.asc': no OpenPGP key"):
        decrypt_bytes((FIXTURES / "pgp/app.env").read_bytes(), Format.DOTENV, ring, name="env")
    ring.close()
