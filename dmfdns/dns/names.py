"""Owner-name canonical form, shared by every ingress (HTTP, sync, CLI, DNS).

RFC 4343: DNS names compare case-insensitively, so dmfdns stores and looks up the lowercase
form without a trailing dot. A leading ``_`` label is allowed (``_dmp.``,
``_dnsmesh-heartbeat.``); otherwise labels are letters, digits, hyphen and underscore.
"""

import re

MAX_NAME = 253       # RFC 1035 section 3.1: 255 octets on the wire, 253 in text form
MAX_LABEL = 63
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def canonical(name) -> str | None:
    """The canonical (lowercase, no trailing dot) form of ``name``, or None if invalid."""
    if not isinstance(name, str) or not name.isascii():
        return None
    text = name[:-1] if name.endswith(".") else name
    text = text.lower()
    if not text or len(text) > MAX_NAME:
        return None
    if all(_LABEL.fullmatch(label) for label in text.split(".")):
        return text
    return None


def within(name: str, zone: str) -> bool:
    """True if canonical ``name`` is ``zone`` or below it."""
    return name == zone or name.endswith("." + zone)


def reversed_key(name: str) -> bytes:
    """Labels in reverse order joined by ``.``, so a descendant's key has the prefix
    ``reversed_key(name) + b"."`` and an ordered scan finds empty non-terminals."""
    return ".".join(reversed(name.split("."))).encode("ascii")


def from_reversed_key(key: bytes) -> str:
    return ".".join(reversed(key.decode("ascii").split(".")))
