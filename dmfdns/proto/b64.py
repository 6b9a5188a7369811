"""Strict standard base64 (RFC 4648 section 4) with canonical padding.

Every reference encoder emits canonical padded base64, so a strict decoder accepts every
honest record; it rejects non-alphabet characters, bad padding and non-zero pad bits so
that one blob has exactly one text form.
"""

import base64
import binascii
import re

_CANONICAL = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(text: str) -> bytes | None:
    """Decode ``text`` or return None; never raises."""
    if not isinstance(text, str) or not _CANONICAL.fullmatch(text):
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    # Non-zero pad bits decode fine but would give a second spelling of the same blob.
    if base64.b64encode(data).decode("ascii") != text:
        return None
    return data


def decode_after_prefix(value: str, prefix: str) -> bytes | None:
    """The blob behind ``prefix`` in ``value``, or None."""
    if not isinstance(value, str) or not value.startswith(prefix):
        return None
    return decode(value[len(prefix):])
