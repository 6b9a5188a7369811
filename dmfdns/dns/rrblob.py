"""The pre-packed TXT answer kept per owner name: the one module that packs and reads it.

A blob is a sequence of entries ``u64 expiry_ms | u16 rdlength | rdata`` where rdata is the
TXT RDATA (character-strings of at most 255 bytes, RFC 1035 section 3.3.14). The store
rebuilds a name's blob on every write; the responder filters expired entries and splices the
rest into a response with a per-query TTL, so a query is one read and no re-encoding. The
readers only walk the entry headers, so they work on bytes and on a memoryview alike.
"""

import struct

from ..proto import txt

_HEAD = struct.Struct(">QH")
_read_head = _HEAD.unpack_from
_HEAD_SIZE = _HEAD.size
_EXPIRY_SIZE = 8                # the u64 before rdlength

FOREVER_MS = 2**63 - 1
"""An expiry or validity bound meaning: until the blob changes."""


def entry(value: bytes, expiry_ms: int) -> bytes:
    rdata = txt.rdata(value)
    return _HEAD.pack(expiry_ms, len(rdata)) + rdata


def build(items) -> bytes:
    """A blob from ``(value_bytes, expiry_ms)`` pairs, in the given order."""
    return b"".join(entry(value, expiry_ms) for value, expiry_ms in items)


def entries(blob: bytes):
    """Yield ``(expiry_ms, rdata)`` for every entry of ``blob``."""
    offset, end = 0, len(blob)
    while offset < end:
        expiry_ms, length = _HEAD.unpack_from(blob, offset)
        offset += _HEAD.size
        yield expiry_ms, blob[offset:offset + length]
        offset += length


def live(blob: bytes, now_ms: int):
    """The ``(expiry_ms, rdata)`` entries of ``blob`` still alive at ``now_ms``."""
    return [(e, r) for e, r in entries(blob) if e > now_ms]


def live_wire_rdata(blob: bytes, now_ms: int):
    """``(tails, soonest_ms)``: for each entry alive at ``now_ms``, in order, its
    ``u16 rdlength | rdata`` (the tail of the RR on the wire, after the TTL), and the
    earliest of their expiries (FOREVER_MS if none). The DNS fast path's read: one pass,
    no tuple per entry."""
    records, soonest = [], FOREVER_MS
    offset, end = 0, len(blob)
    while offset < end:
        expiry_ms, length = _read_head(blob, offset)
        stop = offset + _HEAD_SIZE + length
        if expiry_ms > now_ms:
            if expiry_ms < soonest:
                soonest = expiry_ms
            records.append(blob[offset + _EXPIRY_SIZE:stop])
        offset = stop
    return records, soonest


def live_until(blob, now_ms: int) -> int | None:
    """The last millisecond at which some entry of ``blob`` that is live at ``now_ms`` is
    still live (its expiry minus one), or None if no entry is live at ``now_ms``. Entries
    never come back to life as time goes on, so None stays true until the blob changes."""
    last, offset, end = None, 0, len(blob)
    while offset < end:
        expiry_ms, length = _read_head(blob, offset)
        if expiry_ms > now_ms and (last is None or expiry_ms - 1 > last):
            last = expiry_ms - 1
        offset += _HEAD_SIZE + length
    return last
