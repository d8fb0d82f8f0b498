"""AES-256-GCM values as sops writes them: ``ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]``.

The additional authenticated data of a value is its path in the tree joined by ``:`` with a
trailing ``:``; the MAC itself uses the document's ``lastmodified`` timestamp instead.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from decimal import Decimal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError, MacMismatchError

ENCRYPTED_VALUE = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")


class GoTime(str):
    """A timestamp as Go's ``time.Time.MarshalText`` writes it (RFC 3339, nanoseconds trimmed).

    yaml.v3 turns plain timestamps into time.Time; sops encrypts them as ``type:time`` and
    feeds that text into the MAC.
    """


_GO_TIME = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[Tt ](\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?)?$"
)


def go_time(text: str, *, zone_required: bool = False) -> GoTime | None:
    """Parse what yaml.v3 (or MarshalText) accepts as a timestamp; None if it is not one."""
    match = _GO_TIME.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    separator = text[match.start(4) - 1] if hour is not None else ""
    if hour is not None and ((separator == " ") != (zone is None)):
        return None  # "T" needs a zone, " " has none (yaml.v3's formats)
    if zone_required and zone is None:
        return None
    try:
        datetime.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    frac = (fraction or "").rstrip("0")
    zone_text = "Z" if zone in (None, "Z", "+00:00", "-00:00") else zone
    return GoTime(
        f"{int(year):04d}-{int(month):02d}-{int(day):02d}T{int(hour or 0):02d}:{int(minute or 0):02d}:"
        f"{int(second or 0):02d}{frac if frac != '.' else ''}{zone_text}"
    )


def go_time_from_datetime(value: datetime.date) -> GoTime:
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    offset = value.utcoffset()
    if offset is None or offset == datetime.timedelta(0):
        zone = "Z"
    else:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    frac = f".{value.microsecond:06d}".rstrip("0") if value.microsecond else ""
    return GoTime(value.strftime("%Y-%m-%dT%H:%M:%S") + (frac if frac != "." else "") + zone)


PlainValue = str | int | float | bool | bytes

_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def is_encrypted_value(value: object) -> bool:
    return isinstance(value, str) and ENCRYPTED_VALUE.match(value) is not None


def decrypt_value(value: str, key: bytes, additional_data: str, *, where: str) -> PlainValue:
    """Decrypt one value; ``where`` names it in errors (a path, never the value)."""
    if value == "":
        return ""
    match = ENCRYPTED_VALUE.match(value)
    if match is None:
        raise DecryptionError(f"{where} is not a sops encrypted value")
    try:
        data, iv, tag = (base64.b64decode(match.group(i), validate=True) for i in (1, 2, 3))
    except (binascii.Error, ValueError):
        raise MacMismatchError(f"MAC mismatch: {where} has a malformed encrypted value") from None
    datatype = match.group(4)
    try:
        plain = AESGCM(key).decrypt(iv, data + tag, additional_data.encode())
    except (InvalidTag, ValueError):
        raise MacMismatchError(
            f"MAC mismatch: {where} failed AES-GCM authentication (value changed or wrong data key)"
        ) from None
    return _typed(plain, datatype, where)


def _typed(plain: bytes, datatype: str, where: str) -> PlainValue:
    if datatype == "bytes":
        return plain
    text = plain.decode("utf-8", errors="surrogateescape")
    try:
        if datatype in ("str", "comment"):
            return text
        if datatype == "time":
            parsed = go_time(text, zone_required=True)
            if parsed is None:
                raise ValueError
            return parsed
        if datatype in ("int", "int64"):
            return int(text, 10)
        if datatype == "float":
            return float(text)
        if datatype == "bool":
            if text in _GO_TRUE:
                return True
            if text in _GO_FALSE:
                return False
            raise ValueError
    except ValueError:
        raise DecryptionError(f"{where} does not hold a valid {datatype}") from None
    raise DecryptionError(f"{where} has an unknown sops value type {datatype!r}")


def go_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)).normalize(), "f")
    return text


def mac_bytes(value: PlainValue) -> bytes:
    """The bytes sops feeds into the MAC for one value (its ``ToBytes``)."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return go_float(value).encode()
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", errors="surrogateescape")
