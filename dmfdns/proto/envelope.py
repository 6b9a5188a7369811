"""The DMPv2 plaintext envelope inside the AEAD (docs/wire-format.md §7).

``"DMPV2:" || header_json || "\\n" || body``, where header_json is ``{"from":"user@host"}``
with sorted keys, compact separators and ASCII, at most 256 bytes. A sender whose address
does not canonicalise sends the raw body (the v1 form). A receiver treats anything that
does not parse as a v2 header as v1 text that happens to start with the prefix, so no
plaintext is ever lost; unknown header keys are ignored for forward compatibility.
"""

import json
import re

PREFIX = b"DMPV2:"
SEPARATOR = b"\n"
MAX_HEADER_LEN = 256
MAX_HOST_LEN = 253

_LOCAL_PART = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_HOST_LABEL = re.compile(r"[a-z0-9]|[a-z0-9][a-z0-9-]{0,61}[a-z0-9]")


def canonical_address(text) -> str | None:
    """The canonical ``user@host`` form of ``text``, or None if it is not an address."""
    if not isinstance(text, str) or not text.isascii():
        return None
    text = text.strip().lower()
    if text.count("@") != 1:
        return None
    local, host = text.split("@")
    host = host.rstrip(".")
    if not local or not host or len(host) > MAX_HOST_LEN:
        return None
    if not _LOCAL_PART.fullmatch(local) or local.endswith(".") or ".." in local:
        return None
    if not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        return None
    return f"{local}@{host}"


def wrap(body: bytes, sender_address, extra: dict | None = None) -> bytes:
    """The v2 envelope of ``body`` from ``sender_address``, or ``body`` itself (v1 form)
    when the address is None, does not canonicalise, or makes the header too long.

    ``extra`` adds header keys besides ``from`` (JSON values); readers ignore keys they do
    not know, so an extension never hides the body from them.
    """
    address = canonical_address(sender_address)
    if address is None:
        return bytes(body)
    fields = {k: v for k, v in (extra or {}).items() if k != "from"}
    fields["from"] = address
    header = json.dumps(fields, sort_keys=True, separators=(",", ":"),
                        ensure_ascii=True).encode("ascii")
    if len(header) > MAX_HEADER_LEN:
        return bytes(body)
    return PREFIX + header + SEPARATOR + bytes(body)


def unwrap(plaintext: bytes) -> tuple[bytes, str | None]:
    """(body, canonical sender address or None) of a decrypted plaintext; never raises."""
    body, header = unwrap_fields(plaintext)
    sender = header.get("from")
    return body, canonical_address(sender) if isinstance(sender, str) else None


def unwrap_fields(plaintext: bytes) -> tuple[bytes, dict]:
    """(body, the whole header object, {} for the v1 form) of a plaintext; never raises.

    ``from`` is returned as written; ``unwrap`` is what canonicalises it.
    """
    plaintext = bytes(plaintext)
    if not plaintext.startswith(PREFIX):
        return plaintext, {}
    rest = plaintext[len(PREFIX):]
    newline = rest.find(SEPARATOR, 0, MAX_HEADER_LEN + 1)
    if newline < 0:
        return plaintext, {}
    header = _header_object(rest[:newline])
    if header is None:
        return plaintext, {}
    return rest[newline + 1:], header


def _header_object(raw: bytes) -> dict | None:
    try:
        header = json.loads(raw.decode("ascii"))
    except (ValueError, RecursionError):
        return None
    return header if isinstance(header, dict) else None
