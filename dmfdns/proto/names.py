"""Domain names: the one canonical form of owner names, the LDH check of names carried
inside records, and the reversed-label store key.

Two rules for two jobs:

* **Owner names** (what the store holds, HTTP and sync accept, DNS answers): RFC 4343 makes
  DNS names compare case-insensitively, so every ingress keeps the lowercase form without a
  trailing dot (``canonical``). Labels are letters, digits, hyphen and underscore, so the
  ``_dmp.`` and ``_dnsmesh-heartbeat.`` owners fit; no label starts or ends with a hyphen.
* **Names typed by users or given in config** are compared in ``folded`` form (lowercase,
  trailing dots dropped) without being checked.
* **Names inside record fields** (cluster name, bootstrap domain, rotation subject, heartbeat
  endpoint host): letters, digits and hyphen only (RFC 952/1123 host names, no ``_``), case
  kept, one trailing dot accepted and dropped (``ldh_name``), compared case-insensitively
  (``same_name``).

The DNS fast path checks owner names on the wire bytes, in the asker's case:
``OWNER_NAME_WIRE`` is the rule of ``canonical`` in wire form, letters in either case.
"""

import re

MAX_NAME = 253       # RFC 1035 section 3.1: 255 octets on the wire, 253 in text form
MAX_LABEL = 63

_OWNER_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_OWNER_LABEL_RE = re.compile(_OWNER_LABEL)
_LDH_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")



def _wire_label(length: int) -> bytes:
    """One owner-name label of ``length`` characters in wire form: its length byte, then
    exactly that many characters (letters in either case: RFC 4343 keeps the asker's)."""
    edge, inner = b"[A-Za-z0-9_]", b"[A-Za-z0-9_-]"
    body = edge if length == 1 else edge + inner + b"{%d}" % (length - 2) + edge
    return re.escape(bytes((length,))) + body


# The labels of an owner name in wire form (no root label), as a bytes pattern to build a
# larger one from: one alternative per label length, since a length byte can itself be a
# digit or a hyphen. The caller bounds the name's length (255 octets, RFC 1035 3.1).
OWNER_NAME_WIRE = (b"(?:(?:" + b"|".join(map(_wire_label, range(1, MAX_LABEL + 1)))
                   + b")+)")


def folded(name: str) -> str:
    """The form two names given by a user, a config file or a DNS message are compared in:
    lowercase, trailing dots dropped. Not a check: see ``canonical`` for that."""
    return name.rstrip(".").lower()


def drop_root_dot(name: str) -> str:
    """``name`` without one trailing dot (the root label), if it has one."""
    return name[:-1] if name.endswith(".") else name


def canonical(name) -> str | None:
    """The canonical (lowercase, no trailing dot) form of owner name ``name``, or None if
    it is not a valid owner name."""
    if not isinstance(name, str) or not name.isascii():
        return None
    text = drop_root_dot(name).lower()
    if not text or len(text) > MAX_NAME:
        return None
    if all(_OWNER_LABEL_RE.fullmatch(label) for label in text.split(".")):
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


def ldh_name(name) -> str | None:
    """``name`` without one trailing dot if it is a valid LDH host name, else None."""
    if not isinstance(name, str) or not name or name.endswith(".."):
        return None
    stripped = drop_root_dot(name)
    if not stripped or not stripped.isascii():
        return None
    if all(_LDH_LABEL_RE.fullmatch(label) for label in stripped.split(".")):
        return stripped
    return None


def same_name(a: str, b: str) -> bool:
    """Case-insensitive comparison after removing one trailing dot from each."""
    return drop_root_dot(a).casefold() == drop_root_dot(b).casefold()
