"""Checks on what callers hand the store, done before any table is touched.

Every write validates all of its input first, so a refused item leaves nothing half done
(MemoryStore has no transaction to roll back). Errors are StoreError with a message that
is safe to show to a client.
"""

import hashlib
import math
import re
from dataclasses import dataclass
from functools import lru_cache

from ..proto.names import canonical, reversed_key
from .api import Change, StoreError
from .changelog import MAX_TS_MS, to_ms
from .merge import Entry

MAX_VALUE_BYTES = 65_000   # a TXT RDATA (value + one length byte per 255) fits a u16
MAX_ORIGIN_BYTES = 255
MAX_FUTURE_MS = 60_000     # the reference's bound on a peer's timestamps
MAX_NAMES_LIMIT = 1000     # most names one ``names_with_prefix`` call returns
_LABEL_PREFIX = re.compile(r"[a-z0-9_-]{0,63}")
_MAX_EXPIRY = MAX_TS_MS / 1000


@dataclass(frozen=True)
class Owner:
    """A canonical owner name and its reversed-label key."""

    name: str
    key: bytes


@dataclass(frozen=True)
class Item:
    """One checked ``(name, value, expiry)``."""

    owner: Owner
    value: bytes
    value_hash: bytes
    expiry_ms: int


def owner(name) -> Owner:
    text = canonical(name)
    if text is None:
        raise StoreError(f"invalid record name: {str(name)[:80]!r}")
    return Owner(text, reversed_key(text))


@lru_cache(maxsize=16_384)
def _cached_key(name: str) -> bytes | None:
    text = canonical(name)
    return None if text is None else reversed_key(text)


def owner_key(name) -> bytes:
    """The reversed-label key of ``name`` for the DNS hot path: the same check as
    ``owner``, memoised because resolvers ask for the same names again and again."""
    try:
        key = _cached_key(name)
    except TypeError:          # unhashable, so certainly not a name
        key = None
    if key is None:
        raise StoreError(f"invalid record name: {str(name)[:80]!r}")
    return key


def label_prefix(text) -> bytes:
    """The start of a leftmost label, lowercased (RFC 4343): at most 63 letters, digits,
    ``-`` or ``_``; empty matches every label."""
    lowered = text.lower() if isinstance(text, str) and text.isascii() else None
    if lowered is None or not _LABEL_PREFIX.fullmatch(lowered):
        raise StoreError(f"invalid label prefix: {str(text)[:80]!r}")
    return lowered.encode("ascii")


def names_limit(limit) -> int:
    if (isinstance(limit, bool) or not isinstance(limit, int)
            or not 1 <= limit <= MAX_NAMES_LIMIT):
        raise StoreError(f"invalid name limit: {limit!r} (1..{MAX_NAMES_LIMIT})")
    return limit


def fast_now_ms(now) -> int:
    """``now_ms`` without the range checks, for reads: any number gives an answer."""
    try:
        return round(now * 1000)
    except (TypeError, ValueError, OverflowError):
        raise StoreError(f"invalid time: {now!r}") from None


def value_bytes(value) -> bytes:
    if not isinstance(value, str) or not value.isascii():
        raise StoreError("invalid record value: must be ASCII text")
    if len(value) > MAX_VALUE_BYTES:
        raise StoreError(f"invalid record value: longer than {MAX_VALUE_BYTES} bytes")
    return value.encode("ascii")


def expiry_ms(expiry) -> int:
    if (isinstance(expiry, bool) or not isinstance(expiry, (int, float))
            or not math.isfinite(expiry) or not 0 <= expiry <= _MAX_EXPIRY):
        raise StoreError(f"invalid expiry: {expiry!r}")
    return to_ms(expiry)


def now_ms(now) -> int:
    try:
        return expiry_ms(now)
    except StoreError:
        raise StoreError(f"invalid time: {now!r}") from None


def item(name, value, expiry) -> Item:
    data = value_bytes(value)
    return Item(owner(name), data, hashlib.sha256(data).digest(), expiry_ms(expiry))


def origin(node_id) -> str:
    if (not isinstance(node_id, str) or not node_id.isprintable()
            or len(node_id.encode("utf-8", "surrogatepass")) > MAX_ORIGIN_BYTES):
        raise StoreError(f"invalid node id: {str(node_id)[:80]!r}")
    return node_id


def remote(change: Change, now_ms_: int) -> tuple[Owner, bytes, Entry]:
    """A peer's change as ``(owner, value hash, entry)``; StoreError if it is malformed,
    its hash does not match its value, or it was written implausibly far in the future
    (a future write time would win every merge until it expires)."""
    if not isinstance(change, Change):
        raise StoreError("not a Change")
    checked = item(change.name, change.value, change.expiry)
    if not isinstance(change.value_hash, str) or checked.value_hash.hex() != change.value_hash:
        raise StoreError("value_hash does not match the value")
    written, node, deleted = change.version
    if isinstance(written, bool) or not isinstance(written, int) or not 0 <= written <= MAX_TS_MS:
        raise StoreError(f"invalid write time: {written!r}")
    if written > now_ms_ + MAX_FUTURE_MS:
        raise StoreError("change written more than 60 s in the future")
    entry = Entry(checked.value, checked.expiry_ms, written, origin(node), bool(deleted), 0)
    return checked.owner, checked.value_hash, entry
