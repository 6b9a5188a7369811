"""The zone-transfer journal: what each generation added and removed (RFC 1995 IXFR).

Every committed write that changes the store bumps its generation (the SOA serial follows
it); with the journal on, the same transaction stores, under that generation, the values
that appeared and disappeared. A value is *present* while its entry exists and is not a
tombstone, whatever its expiry: time alone changes nothing, the sweep that removes an
expired value is the change (and bumps the generation). A transfer of generation g is
then exactly the present values at g, and the journal entries g+1..G turn it into G.

The journal is bounded by a number of operations (each generation counts at least one);
the oldest generations go first. A gap (a generation missing, e.g. while the journal was
off) makes ``condense`` refuse, and the transfer falls back to a full answer.

Entry encoding: ``u32 count`` then per operation ``u8 op | u16 name length | name |
u32 value length | value`` (op 1 = add, 0 = delete).
"""

import struct

ADD, DELETE = 1, 0
JOURNAL_OPS = "store:journal_ops"
_COUNT = struct.Struct(">I")
_OP = struct.Struct(">BH")
_LEN = struct.Struct(">I")
GENERATION_KEY = struct.Struct(">Q")


def encode(ops) -> bytes:
    """``ops``: ``(op, name, value_bytes)`` triples of one generation."""
    parts = [_COUNT.pack(len(ops))]
    for op, name, value in ops:
        raw = name.encode("ascii")
        parts.append(_OP.pack(op, len(raw)) + raw + _LEN.pack(len(value)) + value)
    return b"".join(parts)


def count(raw: bytes) -> int:
    return _COUNT.unpack_from(raw)[0]


def decode(raw: bytes) -> list:
    """The ``(op, name, value_bytes)`` triples of an entry."""
    (total,), offset, ops = _COUNT.unpack_from(raw), _COUNT.size, []
    for _ in range(total):
        op, name_len = _OP.unpack_from(raw, offset)
        offset += _OP.size
        name = bytes(raw[offset:offset + name_len]).decode("ascii")
        offset += name_len
        (value_len,) = _LEN.unpack_from(raw, offset)
        offset += _LEN.size
        ops.append((op, name, bytes(raw[offset:offset + value_len])))
        offset += value_len
    return ops


def cost(ops) -> int:
    """What an entry counts against the journal bound."""
    return max(1, len(ops))


def condense(entries, since: int, current: int):
    """The net difference from generation ``since`` to ``current`` as ``(deleted, added)``
    lists of ``(name, value_bytes)``, from ``(generation, raw)`` entries in ascending order;
    None when the entries do not cover every generation ``since+1..current``."""
    expected = since + 1
    first_op, last_op = {}, {}
    for generation, raw in entries:
        if generation > current:
            break
        if generation != expected:
            return None
        expected += 1
        for op, name, value in decode(raw):
            key = (name, value)
            first_op.setdefault(key, op)
            last_op[key] = op
    if expected != current + 1:
        return None
    deleted, added = [], []
    for key, first in first_op.items():
        present_before, present_after = first == DELETE, last_op[key] == ADD
        if present_before and not present_after:
            deleted.append(key)
        elif present_after and not present_before:
            added.append(key)
    return deleted, added
