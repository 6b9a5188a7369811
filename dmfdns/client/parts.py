"""How much text one DMP message can carry, and cutting longer texts into parts.

A message's size is bounded by its slot manifest: it lists one 32-byte hash per chunk and
must fit the node's value cap (2048 bytes on a reference node, docs/compatibility.md §2.1), so
n <= 42 chunks, k <= 32 data chunks, an outer message of at most 4092 bytes and about 3.7 KB
of text (docs/wire-format.md §6). A longer text is sent as several complete messages. When
the DMPv2 envelope is in use, each part's header carries ``"part": [index, count, group]``
(an extension key: readers that do not know it show each part as a message of its own, so
no text is ever hidden); a dmfdns receiver joins the parts of a group from one sender.
"""

import math
import secrets

from ..proto import codec, envelope, prefixes, sealing
from ..proto.message import DMPHeader, MIN_OUTER_LEN
from ..proto.slot_manifest import HASH_LEN, LEGACY_BLOB_LEN

PART_KEY = "part"
MAX_PARTS = 64
_SEAL_OVERHEAD = sealing.MIN_SEALED_LEN + sealing.TAG_LEN


class MessageTooLong(Exception):
    pass


def manifest_wire_len(total_chunks: int) -> int:
    return len(prefixes.SLOT_MANIFEST) + 4 * math.ceil(
        (LEGACY_BLOB_LEN + HASH_LEN * total_chunks) / 3)


def max_outer_len(max_record_bytes: int) -> int:
    """The longest outer message whose manifest fits ``max_record_bytes``."""
    best = 0
    for k in range(1, codec.MAX_SHARES + 1):
        outer = k * codec.BLOCK_LEN - 4
        _, n = codec.plan(outer)
        if n > codec.MAX_SHARES or manifest_wire_len(n) > max_record_bytes:
            break
        best = outer
    return best


def plaintext_capacity(header: DMPHeader, max_record_bytes: int) -> int:
    """Bytes of plaintext (envelope included) one message with ``header`` can carry."""
    header_len = len(header.to_json(total=1))
    return max_outer_len(max_record_bytes) - MIN_OUTER_LEN - header_len - _SEAL_OVERHEAD


def wrap_part(body: bytes, sender: str | None, index: int, count: int, group: str) -> bytes:
    if count == 1:
        return envelope.wrap(body, sender) if sender else bytes(body)
    if not sender:
        return bytes(body)
    return envelope.wrap(body, sender, {PART_KEY: [index, count, group]})


def split(body: bytes, header: DMPHeader, sender: str | None,
          max_record_bytes: int) -> list[bytes]:
    """The plaintexts to send for ``body``: one when it fits, else numbered parts."""
    capacity = plaintext_capacity(header, max_record_bytes)
    single = wrap_part(body, sender, 0, 1, "")
    if len(single) <= capacity:
        return [single]
    group = secrets.token_hex(8)
    overhead = len(wrap_part(b"", sender, MAX_PARTS - 1, MAX_PARTS, group))
    room = capacity - overhead
    if room <= 0:
        raise MessageTooLong("the value cap leaves no room for text")
    pieces = cut_utf8(bytes(body), room)
    if len(pieces) > MAX_PARTS:
        raise MessageTooLong(f"message of {len(body)} bytes needs {len(pieces)} parts; "
                             f"at most {MAX_PARTS} ({MAX_PARTS * room} bytes)")
    return [wrap_part(piece, sender, i, len(pieces), group) for i, piece in enumerate(pieces)]


def cut_utf8(data: bytes, size: int) -> list[bytes]:
    """``data`` in pieces of at most ``size`` bytes, never inside a UTF-8 sequence."""
    pieces, start = [], 0
    while start < len(data):
        end = min(len(data), start + size)
        if end < len(data):
            back = end
            while back > start and (data[back] & 0xC0) == 0x80:
                back -= 1
            end = back if back > start else end
        pieces.append(data[start:end])
        start = end
    return pieces


def part_info(header_fields: dict) -> tuple[int, int, str] | None:
    """(index, count, group) from a decrypted envelope header, or None if it has none."""
    value = header_fields.get(PART_KEY)
    if not (isinstance(value, list) and len(value) == 3):
        return None
    index, count, group = value
    if not (isinstance(index, int) and isinstance(count, int) and isinstance(group, str)):
        return None
    if not (0 <= index < count <= MAX_PARTS) or not 1 <= len(group) <= 32:
        return None
    return index, count, group
