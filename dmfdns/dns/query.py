"""Strict parsing of an incoming DNS query, for the responder's slow path.

The parser never raises. It returns None for what gets no answer at all (runts shorter than
the 12-byte header); anything with a readable header becomes a ``Query`` whose ``error``
says why it deserves FORMERR (RFC 1035 section 4.1.1, RFC 8906 section 3.1.1), keeping the
question and the OPT record when those parsed, so the FORMERR can echo them.
"""

import struct
from dataclasses import dataclass, field

HEADER = struct.Struct(">HHHHHH")
_RR_FIXED = struct.Struct(">HHIH")
OPT = 41
MAX_NAME_WIRE = 255                 # RFC 1035 section 3.1


@dataclass(slots=True)
class Opt:
    """The OPT pseudo-RR of a query (RFC 6891 section 6.1.2)."""

    payload: int
    ext_rcode: int
    version: int
    flags: int
    options: list = field(default_factory=list)    # (code, data) pairs in wire order

    @property
    def do(self) -> bool:
        return bool(self.flags & 0x8000)

    def option(self, code: int):
        """Data of the first option ``code``, or None."""
        for opt_code, data in self.options:
            if opt_code == code:
                return data
        return None


@dataclass(slots=True)
class Query:
    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int
    qname: tuple | None = None      # labels as received (case kept, RFC 4343 / 0x20)
    qtype: int = 0
    qclass: int = 0
    opt: Opt | None = None
    opt_seen: bool = False          # an OPT was present, even a malformed one (RFC 6891 s7)
    error: str | None = None        # why this is FORMERR; None when well formed

    @property
    def qr(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF


class _Malformed(Exception):
    pass


def parse(data: bytes) -> Query | None:
    """Parse ``data``; None only for a runt (fewer than 12 bytes)."""
    if len(data) < HEADER.size:
        return None
    data = bytes(data)
    query = Query(*HEADER.unpack_from(data))
    try:
        _parse_body(data, query)
    except _Malformed as exc:
        query.error = str(exc)
    except (struct.error, IndexError, ValueError):
        query.error = "truncated message"
    return query


def _parse_body(data: bytes, query: Query) -> None:
    offset = HEADER.size
    if query.qdcount:
        qname, offset = _question_name(data, offset)
        if offset + 4 > len(data):
            raise _Malformed("truncated question")
        query.qtype, query.qclass = struct.unpack_from(">HH", data, offset)
        query.qname = qname
        offset += 4
    for _ in range(query.qdcount - 1):
        offset = _skip_name(data, offset) + 4
    for _ in range(query.ancount + query.nscount):
        offset = _skip_rr(data, offset)
    opts = 0
    for _ in range(query.arcount):
        start = offset
        offset = _skip_name(data, offset)
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
        offset += _RR_FIXED.size
        if offset + rdlength > len(data):
            raise _Malformed("truncated additional record")
        if rtype == OPT:
            opts += 1
            query.opt_seen = True
            if data[start] != 0 or offset - start != 11:
                raise _Malformed("OPT owner is not the root (RFC 6891 section 6.1.1)")
            if opts > 1:
                raise _Malformed("more than one OPT record (RFC 6891 section 6.1.1)")
            query.opt = Opt(rclass, ttl >> 24, (ttl >> 16) & 0xFF, ttl & 0xFFFF,
                            _options(data[offset:offset + rdlength]))
        offset += rdlength
    if offset != len(data):
        raise _Malformed(f"{len(data) - offset} trailing bytes after the last record")
    # QDCOUNT 0 is well formed only as RFC 7873 section 5.4's query for a server cookie,
    # which needs an OPT; the responder checks the COOKIE option itself.
    if query.qdcount > 1 or (query.qdcount == 0 and query.opt is None):
        raise _Malformed(f"QDCOUNT is {query.qdcount}, not 1 (RFC 9619)")


def _question_name(data: bytes, offset: int):
    """Labels of an uncompressed name (a first question is never compressed) and the
    offset after it."""
    labels = []
    start = offset
    while True:
        if offset >= len(data):
            raise _Malformed("truncated question name")
        length = data[offset]
        if length == 0:
            break
        if length > 63:
            raise _Malformed("compressed or extended label in the question name")
        labels.append(data[offset + 1:offset + 1 + length])
        offset += 1 + length
        if offset >= len(data):
            raise _Malformed("truncated question name")
    offset += 1
    if offset - start > MAX_NAME_WIRE:
        raise _Malformed("question name longer than 255 octets")
    return tuple(labels), offset


def _skip_name(data: bytes, offset: int) -> int:
    """Offset after a possibly compressed name (its target is never followed)."""
    start = offset
    while True:
        length = data[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0 == 0xC0:
            offset += 2
            break
        if length > 63:
            raise _Malformed("extended label type")
        offset += 1 + length
        if offset - start > MAX_NAME_WIRE:
            raise _Malformed("name longer than 255 octets")
    if offset > len(data):
        raise _Malformed("truncated name")
    return offset


def _skip_rr(data: bytes, offset: int) -> int:
    offset = _skip_name(data, offset)
    rdlength = _RR_FIXED.unpack_from(data, offset)[3]
    offset += _RR_FIXED.size + rdlength
    if offset > len(data):
        raise _Malformed("truncated record")
    return offset


def _options(rdata: bytes) -> list:
    """EDNS options as (code, data) pairs; a length running past the RDATA is FORMERR."""
    options, offset = [], 0
    while offset < len(rdata):
        if offset + 4 > len(rdata):
            raise _Malformed("truncated EDNS option header")
        code, length = struct.unpack_from(">HH", rdata, offset)
        offset += 4
        if offset + length > len(rdata):
            raise _Malformed("EDNS option longer than the OPT RDATA")
        options.append((code, rdata[offset:offset + length]))
        offset += length
    return options


def question_end(message: bytes) -> int | None:
    """Where the one question of ``message`` ends (an uncompressed name, type, class), or
    None if QDCOUNT is not 1 or the question does not fit; reads only lengths, for the
    stand-in responses built from bytes (a bare SERVFAIL, an RRL slip)."""
    if message[4:6] != b"\x00\x01":
        return None
    at, size = 12, len(message)
    while at < size:
        length = message[at]
        if length == 0:
            return at + 5 if at + 5 <= size else None
        if length > 63:
            return None
        at += 1 + length
    return None
