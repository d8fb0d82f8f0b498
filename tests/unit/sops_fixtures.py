"""Helpers shared by the test_sops_* files: the committed fixtures and their keys."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import yaml

from tide.controllers.kustomize.sops import Format, Keyring
from tide.controllers.kustomize.sops.formats import _Loader
from tide.controllers.kustomize.sops.tree import mapping_from_branch

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sops"
KEYS = FIXTURES / "keys"
PLAIN = FIXTURES / "plain"

# every plaintext value of plain/secret.yaml that must never show up in an error
SECRET_PLAINTEXTS = ["YWRtaW4=", "czNjcjN0LXBhc3N3b3Jk", "plain-token-value", "5432"]


def key_data(*names: str) -> dict[str, bytes]:
    return {name: (KEYS / name).read_bytes() for name in names}


def keyring(*names: str) -> Keyring:
    return Keyring.from_secret_data(key_data(*names))


def parse(data: bytes, fmt: Format) -> object:
    """A format-neutral view of a plaintext document, for comparisons."""
    if fmt is Format.YAML:
        # typed as Go's yaml.v3 (and so sops) types plain scalars: 1e3 is a float there
        return [mapping_from_branch(d) for d in yaml.load_all(data, Loader=_Loader)]
    if fmt is Format.JSON:
        return json.loads(data)
    if fmt is Format.INI:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string("[DEFAULT]\n" + data.decode())
        return {name: dict(parser[name]) for name in parser}
    if fmt is Format.DOTENV:
        return [line for line in data.decode().splitlines() if line and not line.startswith("#")]
    return data
