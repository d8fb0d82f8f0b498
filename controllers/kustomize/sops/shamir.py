"""Shamir secret sharing over GF(2^8) as sops (from Vault) uses it to split the data key.

Each share is ``{y_1 … y_n, x}``: one y per byte of the secret and the x coordinate last.
"""

from __future__ import annotations

from .errors import DecryptionError


def _build_tables() -> tuple[list[int], list[int]]:
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        # multiply by the generator 0x03 in GF(2^8) reduced by x^8+x^4+x^3+x+1
        x ^= (x << 1) ^ (0x11B if x & 0x80 else 0)
        x &= 0xFF
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


_EXP, _LOG = _build_tables()


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


def combine(parts: list[bytes]) -> bytes:
    """Recover the secret from at least two shares (Lagrange interpolation at x = 0)."""
    if len(parts) < 2:
        raise DecryptionError("Shamir: less than two parts cannot rebuild the data key")
    length = len(parts[0])
    if length < 2 or any(len(p) != length for p in parts):
        raise DecryptionError("Shamir: key group parts have inconsistent lengths")
    xs = [p[-1] for p in parts]
    if len(set(xs)) != len(xs):
        raise DecryptionError("Shamir: duplicate key group parts")
    basis = []
    for i, xi in enumerate(xs):
        term = 1
        for j, xj in enumerate(xs):
            if i != j:
                term = _mul(term, _div(xj, xi ^ xj))
        basis.append(term)
    secret = bytearray(length - 1)
    for idx in range(length - 1):
        acc = 0
        for i, part in enumerate(parts):
            acc ^= _mul(part[idx], basis[i])
        secret[idx] = acc
    return bytes(secret)


def split(secret: bytes, parts: int, threshold: int, coefficients: bytes, xs: list[int]) -> list[bytes]:
    """Deterministic split for tests: the caller provides randomness (coefficients, x coords)."""
    out = [bytearray(len(secret) + 1) for _ in range(parts)]
    for n in range(parts):
        out[n][-1] = xs[n]
    for idx, byte in enumerate(secret):
        coeffs = [byte, *coefficients[idx * (threshold - 1) : (idx + 1) * (threshold - 1)]]
        for n in range(parts):
            y = 0
            for c in reversed(coeffs):
                y = _mul(y, xs[n]) ^ c
            out[n][idx] = y
    return [bytes(p) for p in out]
