"""PGP verification of the checked-out commit and/or tag, with python-gnupg.

The keys are the `*.asc` entries of the verify secret, imported into a throwaway keyring.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gnupg
from dulwich.objects import Commit, Tag


class VerificationError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Verified:
    what: str  # "commit" | "tag"
    object_id: str
    key: str


def normalise_mode(mode: str | None) -> str:
    return "HEAD" if mode in (None, "", "head", "HEAD") else mode


def _verify(
    gpg: gnupg.GPG, workdir: Path, payload: bytes, signature: bytes | None, what: str, object_id: str
) -> Verified:
    reason = "InvalidCommitSignature" if what == "commit" else "InvalidTagSignature"
    if not signature:
        raise VerificationError(
            reason, f"signature verification of {what} '{object_id}' failed: {what} is not signed"
        )
    sig_file = workdir / "sig.asc"
    sig_file.write_bytes(signature)
    result = gpg.verify_data(str(sig_file), payload)
    if not result.valid:
        detail = result.status or "unable to verify signature"
        if result.key_id and not result.fingerprint:
            detail += f" (key ID {result.key_id} is not among the trusted keys)"
        raise VerificationError(reason, f"signature verification of {what} '{object_id}' failed: {detail}")
    return Verified(what, object_id, result.fingerprint or result.key_id or "")


def verify(
    mode: str | None,
    keys: Mapping[str, bytes],
    commit: Commit,
    tag: Tag | None,
) -> list[Verified]:
    """Check what `mode` asks for; raise VerificationError (reason, message) on any failure."""
    mode = normalise_mode(mode)
    armored = [value for key, value in sorted(keys.items()) if key.endswith(".asc")]
    if not armored:
        raise VerificationError(
            "VerificationError", "no PGP public keys ('*.asc') found in the verification secret"
        )
    home = Path(tempfile.mkdtemp(prefix="tide-gpg-"))
    home.chmod(0o700)
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        for key in armored:
            imported = gpg.import_keys(key.decode(errors="replace"))
            if not imported.fingerprints:
                raise VerificationError(
                    "VerificationError", "unable to read the PGP public keys in the verification secret"
                )
        out: list[Verified] = []
        if mode in ("Tag", "TagAndHEAD"):
            if tag is None:
                raise VerificationError(
                    "InvalidTagSignature",
                    "cannot verify tag object's signature if a tag reference is not specified "
                    "or the tag is not annotated",
                )
            payload, signature, _ = tag.extract_signature()
            out.append(_verify(gpg, home, payload, signature, "tag", tag.name.decode(errors="replace")))
        if mode in ("HEAD", "TagAndHEAD"):
            payload, signature, _ = commit.extract_signature()
            out.append(_verify(gpg, home, payload, signature, "commit", commit.id.decode()))
        return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


def describe(results: list[Verified]) -> str:
    return "verified signature of\n" + "\n".join(
        f"\t- {r.what} '{r.object_id}' with key '{r.key}'" for r in results
    )
