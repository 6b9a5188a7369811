"""Byte layout of LmdbStore's sub-databases (documented in docs/storage.md).

* ``records``: ``rkey 0x00 sha256(value)`` -> entry. ``rkey`` is the reversed-label key of
  the name (``dmfdns.proto.names.reversed_key``); names never contain 0x00, so one name's
  entries are the contiguous range starting at ``rkey 0x00``.
* ``names``: ``rkey`` -> the name's pre-packed TXT blob (``dmfdns.dns.rrblob``), present
  only while the name holds a value; a descendant of ``n`` has the prefix ``rkey(n) "."``.
* ``log``: ``u64 ts_ms | name | 0x00 | hex hash`` -> empty. Byte order equals the order of
  ``(ts_ms, name, hash)`` tuples, so it is the reference's digest order.
* ``expiry``: ``u64 expiry_ms | rkey | 0x00 | sha256(value)`` -> empty.
* ``meta``: UTF-8 key -> bytes; the store's own keys start with ``store:``.

An entry is ``u64 expiry_ms | u64 written_ms | u64 ts_ms | u64 order | u8 flags |
u8 origin length | origin | value`` with flag 1 = tombstone. Integers are big-endian.
"""

import struct

from .api import Cursor
from .merge import Entry

SEP = b"\x00"
HASH_BYTES = 32
_U64 = struct.Struct(">Q")
_ENTRY = struct.Struct(">QQQQBB")
_DELETED = 1
_MAX_U64 = 2 ** 64 - 1


def record_key(rkey: bytes, vhash: bytes) -> bytes:
    return rkey + SEP + vhash


def encode_entry(entry: Entry) -> bytes:
    origin = entry.origin.encode("utf-8")
    head = _ENTRY.pack(entry.expiry_ms, entry.written_ms, entry.ts_ms, entry.order,
                       _DELETED if entry.deleted else 0, len(origin))
    return head + origin + entry.value


def decode_entry(raw: bytes) -> Entry:
    expiry_ms, written_ms, ts_ms, order, flags, origin_len = _ENTRY.unpack_from(raw)
    start = _ENTRY.size
    origin = bytes(raw[start:start + origin_len]).decode("utf-8")
    value = bytes(raw[start + origin_len:])
    return Entry(value, expiry_ms, written_ms, origin, bool(flags & _DELETED), ts_ms, order)


def present_value(raw) -> bytes | None:
    """The value of an encoded entry, or None for a tombstone, from the header bytes alone
    (a zone transfer reads every entry of the zone)."""
    if raw[32] & _DELETED:                         # flags: after the four u64
        return None
    return bytes(raw[34 + raw[33]:])               # after the origin and its length


def log_key(position: Cursor) -> bytes:
    return (_U64.pack(position.ts_ms) + position.name.encode("utf-8") + SEP
            + position.value_hash.encode("utf-8"))


def log_seek_key(cursor: Cursor) -> bytes | None:
    """Where to start looking for entries after ``cursor``: b"" (the beginning) for a
    cursor before every position, None for one after every position."""
    if cursor.ts_ms < 0:
        return b""
    if cursor.ts_ms > _MAX_U64:
        return None
    return log_key(cursor)


def decode_log_key(key: bytes) -> Cursor:
    (ts_ms,) = _U64.unpack_from(key)
    name, _, value_hash = bytes(key[_U64.size:]).partition(SEP)
    return Cursor(ts_ms, name.decode("utf-8"), value_hash.decode("utf-8"))


def expiry_key(expiry_ms: int, rkey: bytes, vhash: bytes) -> bytes:
    return _U64.pack(expiry_ms) + rkey + SEP + vhash


def decode_expiry_key(key: bytes) -> tuple[int, bytes, bytes]:
    (expiry_ms,) = _U64.unpack_from(key)
    return expiry_ms, bytes(key[_U64.size:-HASH_BYTES - 1]), bytes(key[-HASH_BYTES:])


def expiry_bound(now_ms: int) -> bytes:
    """Keys below this bound have ``expiry_ms <= now_ms``."""
    return _U64.pack(now_ms + 1)
