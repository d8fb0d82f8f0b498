"""The keys a Kustomization's decryption Secret holds, and recovering a document's data key.

PGP private keys are imported into a throw-away GnuPG home inside a private temporary
directory (mode 0700), created on first use and removed (agent stopped) by ``close()`` or
when the Keyring is garbage collected. age identities stay in memory (pyrage).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

import pyrage

from . import shamir
from .errors import DecryptionError
from .metadata import KEY_ORDER, MasterKey, Metadata

KMS_SECRET_KEYS = {
    "sops.aws-kms": "AWS KMS",
    "sops.azure-kv": "Azure Key Vault",
    "sops.gcp-kms": "GCP KMS",
}
VAULT_TOKEN_KEY = "sops.vault-token"


def parse_age_identities(text: str, *, source: str) -> list[pyrage.x25519.Identity]:
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            raise DecryptionError(f"{source}: line {number} is not an age identity") from None
    if not identities:
        raise DecryptionError(f"{source}: no age identity found")
    return identities


def _remove_gnupg_home(home: str) -> None:
    gpgconf = shutil.which("gpgconf")
    if gpgconf:
        subprocess.run(
            [gpgconf, "--homedir", home, "--kill", "all"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    shutil.rmtree(os.path.dirname(home), ignore_errors=True)


class Keyring:
    """Decryption keys of one Kustomization (``spec.decryption.secretRef`` and friends)."""

    def __init__(
        self,
        *,
        age_identities: Iterable[pyrage.x25519.Identity] = (),
        pgp_keys: Iterable[bytes | tuple[str, bytes]] = (),
        vault_token: str | None = None,
        kms_credentials: Iterable[str] = (),
        configured: bool = False,
    ) -> None:
        self.age_identities = list(age_identities)
        self.age_recipients = {str(i.to_public()) for i in self.age_identities}
        # (where it came from, armored key)
        self._pgp_keys = [k if isinstance(k, tuple) else ("PGP key", k) for k in pgp_keys]
        self.vault_token = vault_token
        self.kms_credentials = set(kms_credentials)
        # False: no spec.decryption at all; encrypted Secrets are then an error of their own.
        self.configured = configured or bool(
            self.age_identities or self._pgp_keys or vault_token or self.kms_credentials
        )
        self._lock = threading.Lock()
        self._gnupg_home: str | None = None
        self._gpg_client: Any = None
        self._pgp_fingerprints: set[str] = set()
        self._finalizer: weakref.finalize[[str], Keyring] | None = None
        self._parts: dict[tuple[str, str], bytes] = {}
        # sops MACs of source files verified before the build (see decrypt.py)
        self.verified_macs: set[str] = set()

    @classmethod
    def from_secret_data(cls, data: Mapping[str, bytes], *, source: str = "decryption Secret") -> Keyring:
        """Keys from a Secret's data, named as Flux names them (``*.asc``, ``*.agekey``, …)."""
        ages: list[pyrage.x25519.Identity] = []
        pgps: list[bytes | tuple[str, bytes]] = []
        vault: str | None = None
        kms: list[str] = []
        for name, value in sorted(data.items()):
            ext = PurePath(name).suffix
            if ext == ".asc":
                pgps.append((f"{source} key '{name}'", bytes(value)))
            elif ext == ".agekey":
                text = bytes(value).decode("utf-8", errors="replace")
                ages.extend(parse_age_identities(text, source=f"{source} key '{name}'"))
            elif name == VAULT_TOKEN_KEY:
                vault = bytes(value).decode("utf-8", errors="replace").strip()
            elif name in KMS_SECRET_KEYS:
                kms.append(name)
        return cls(
            age_identities=ages, pgp_keys=pgps, vault_token=vault, kms_credentials=kms, configured=True
        )

    @classmethod
    def from_age_secret_data(cls, data: Mapping[str, bytes], *, source: str = "--sops-age-secret") -> Keyring:
        """Only the ``*.agekey`` entries, as Flux reads the controller's --sops-age-secret."""
        ages: list[pyrage.x25519.Identity] = []
        for name, value in sorted(data.items()):
            if PurePath(name).suffix == ".agekey":
                text = bytes(value).decode("utf-8", errors="replace")
                ages.extend(parse_age_identities(text, source=f"{source} key '{name}'"))
        return cls(age_identities=ages, configured=True)

    def merged(self, other: Keyring) -> Keyring:
        """This keyring plus another's age identities (the controller's --sops-age-secret)."""
        return Keyring(
            age_identities=[*self.age_identities, *other.age_identities],
            pgp_keys=[*self._pgp_keys, *other._pgp_keys],
            vault_token=self.vault_token or other.vault_token,
            kms_credentials=self.kms_credentials | other.kms_credentials,
            configured=self.configured or other.configured,
        )

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Forget recovered data keys; stop the GnuPG agent and remove its home."""
        self._parts.clear()
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
            self._gnupg_home = None
            self._gpg_client = None

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- data key ---------------------------------------------------------------------------

    def data_key(self, meta: Metadata, *, name: str) -> bytes:
        """The 32-byte data key, from any key group the keys open (Shamir across groups)."""
        groups = meta.key_groups
        parts: list[bytes] = []
        failures: list[str] = []
        for number, group in enumerate(groups, start=1):
            part, reasons = self._open_group(group)
            if part is not None:
                parts.append(part)
            else:
                label = f"key group {number}: " if len(groups) > 1 else ""
                failures.append(label + "; ".join(reasons))
        if len(groups) == 1:
            if parts:
                return self._check_key(parts[0], name)
            raise DecryptionError(
                f"{name}: cannot get the sops data key: no available key opens it; it needs one of: "
                f"{', '.join(k.describe() for k in groups[0])} ({failures[0]})"
            )
        if len(parts) < meta.shamir_threshold:
            raise DecryptionError(
                f"{name}: cannot get the sops data key: {len(parts)} of {len(groups)} key groups "
                f"opened, {meta.shamir_threshold} needed (Shamir threshold); "
                + " | ".join(
                    f"group {n}: {', '.join(k.describe() for k in g)}" for n, g in enumerate(groups, start=1)
                )
                + f" ({' | '.join(failures)})"
            )
        return self._check_key(shamir.combine(parts), name)

    @staticmethod
    def _check_key(key: bytes, name: str) -> bytes:
        if len(key) != 32:
            raise DecryptionError(f"{name}: the recovered sops data key has the wrong length")
        return key

    def _open_group(self, group: list[MasterKey]) -> tuple[bytes | None, list[str]]:
        reasons: list[str] = []
        for key in sorted(group, key=lambda k: KEY_ORDER.get(k.kind, len(KEY_ORDER))):
            cached = self._parts.get((key.kind, key.enc))
            if cached is not None:
                return cached, []
            part, reason = self._open(key)
            if part is not None:
                self._parts[(key.kind, key.enc)] = part
                return part, []
            reasons.append(f"{key.describe()}: {reason}")
        return None, reasons

    def _open(self, key: MasterKey) -> tuple[bytes | None, str]:
        if key.kind == "age":
            if not self.age_identities:
                return None, "no age identity (*.agekey) in the decryption Secret"
            try:
                return pyrage.decrypt(key.enc.encode(), self.age_identities), ""
            except Exception:
                return None, "no matching age identity"
        if key.kind == "pgp":
            if not self._pgp_keys:
                return None, "no PGP private key (*.asc) in the decryption Secret"
            return self._pgp_decrypt(key)
        if key.kind == "hc_vault":
            if not self.vault_token:
                return None, f"no {VAULT_TOKEN_KEY} in the decryption Secret"
            return None, f"Vault at {key.vault_address or 'its address'} is not reachable from Tide"
        provider = {"kms": "AWS KMS", "gcp_kms": "GCP KMS", "azure_kv": "Azure Key Vault"}[key.kind]
        secret_key = {"kms": "sops.aws-kms", "gcp_kms": "sops.gcp-kms", "azure_kv": "sops.azure-kv"}[key.kind]
        if secret_key in self.kms_credentials:
            return None, f"{provider} is not reachable from Tide (credentials in {secret_key} were found)"
        return None, f"{provider} is not reachable from Tide and no {secret_key} credentials were given"

    # --- PGP --------------------------------------------------------------------------------

    def _gpg(self) -> Any:
        import gnupg

        with self._lock:
            if self._gpg_client is None:
                private_dir = tempfile.mkdtemp(prefix="tide-sops-")
                home = os.path.join(private_dir, "gnupg")
                os.mkdir(home, 0o700)
                self._finalizer = weakref.finalize(self, _remove_gnupg_home, home)
                gpg = gnupg.GPG(gnupghome=home, options=["--pinentry-mode", "loopback"])
                for where, armored in self._pgp_keys:
                    if not gpg.import_keys(armored).count:
                        self._finalizer()
                        self._finalizer = None
                        raise DecryptionError(f"{where}: no OpenPGP key could be imported from it")
                for listed in gpg.list_keys(secret=True):
                    self._pgp_fingerprints.add(str(listed.get("fingerprint", "")).upper())
                    for sub in listed.get("subkeys", []):
                        self._pgp_fingerprints.update(str(f).upper() for f in sub if len(str(f)) == 40)
                self._gnupg_home = home
                self._gpg_client = gpg
            return self._gpg_client

    def _pgp_decrypt(self, key: MasterKey) -> tuple[bytes | None, str]:
        result = self._gpg().decrypt(key.enc)
        if result.ok:
            return bytes(result.data), ""
        wanted = key.key_id.replace(" ", "").upper()[-16:]
        if not any(f.endswith(wanted) for f in self._pgp_fingerprints):
            return None, "its private key is not in the decryption Secret"
        return None, "GnuPG could not decrypt the data key with the imported key"
