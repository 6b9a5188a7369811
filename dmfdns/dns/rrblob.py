"""The pre-packed TXT answer kept per owner name, shared by the store and the responder.

A blob is a sequence of entries ``u64 expiry_ms | u16 rdlength | rdata`` where rdata is the
TXT RDATA (character-strings of at most 255 bytes, RFC 1035 section 3.3.14). The store
rebuilds a name's blob on every write; the responder filters expired entries and splices the
rest into a response with a per-query TTL, so a query is one read and no re-encoding.
"""

import struct

from ..proto import txt

_HEAD = struct.Struct(">QH")


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
