"""DNS UPDATE (RFC 2136): parse a message into its zone, prerequisites and TXT operations,
evaluate the prerequisites, and build responses. Pure: bytes in, decisions out.

What the node does with a parsed update (TSIG, authorization, admission, claims, commit) is
``dmfdns.update_service``; every rule and rcode is listed in docs/dns-update.md.

* Zone section (section 3.1): exactly one zone, ZTYPE SOA, ZCLASS IN (FORMERR otherwise),
  the name one of our zones (NOTAUTH otherwise; the reference skips the type check).
* Prerequisites (section 2.4, evaluated in section 3.2, which the reference ignores): name
  in use / not in use, RRset exists (value independent or dependent) / does not exist,
  each owner inside the zone (NOTZONE), TTL 0 and the right RDLENGTH (FORMERR).
* Updates (section 2.5, prescanned in section 3.4.1): add to an RRset (class IN), delete an
  RRset (ANY, TYPE), delete all RRsets at a name (ANY, ANY), delete one RR (NONE). Only TXT
  is ours to change: any other type is REFUSED, never silently skipped; deleting every
  RRset of a name deletes its TXT values (the zone file's SOA and NS stay, section 3.4.2.3).
"""

import struct
from dataclasses import dataclass
from typing import Callable, Sequence

from dnslib import DNSBuffer, DNSError, DNSLabel
from dnslib.buffer import BufferError as DnslibBufferError

from ..proto import names

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
YXDOMAIN, YXRRSET, NXRRSET, NOTAUTH, NOTZONE = 6, 7, 8, 9, 10
RCODE_NAMES = {NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL",
               NXDOMAIN: "NXDOMAIN", NOTIMP: "NOTIMP", REFUSED: "REFUSED",
               YXDOMAIN: "YXDOMAIN", YXRRSET: "YXRRSET", NXRRSET: "NXRRSET",
               NOTAUTH: "NOTAUTH", NOTZONE: "NOTZONE"}
UPDATE_OPCODE = 5
IN, NONE, ANY = 1, 254, 255
SOA, TXT, ANY_TYPE = 6, 16, 255
# Meta types that never name an RRset (RFC 2136 section 3.4.1.2; RFC 6895 section 3.1).
_META_TYPES = frozenset({41, 249, 250, 251, 252, 253, 254, 255})
DEFAULT_ADD_TTL = 60            # a TXT added with TTL 0 lives this long (the reference's rule)
_RR = struct.Struct(">HHIH")
_HEADER = struct.Struct(">HHHHHH")

ADD = "add"
DELETE_VALUE = "delete_value"
DELETE_RRSET = "delete_rrset"
DELETE_NAME = "delete_name"

NAME_IN_USE = "name_in_use"
NAME_NOT_IN_USE = "name_not_in_use"
RRSET_EXISTS = "rrset_exists"
RRSET_NOT_EXISTS = "rrset_not_exists"
RRSET_EQUALS = "rrset_equals"


class UpdateError(Exception):
    """The update is answered with ``rcode`` (no change made); ``reason`` for the logs."""

    def __init__(self, rcode: int, reason: str):
        super().__init__(reason)
        self.rcode = rcode
        self.reason = reason


@dataclass(frozen=True)
class Op:
    kind: str                       # ADD, DELETE_VALUE, DELETE_RRSET, DELETE_NAME
    name: str                       # canonical
    value: str | None = None        # the TXT value (character-strings joined)
    ttl: int = 0


@dataclass(frozen=True)
class Prerequisite:
    kind: str
    name: str
    rtype: int
    values: frozenset = frozenset()   # RRSET_EQUALS: the RDATA keys required


@dataclass(frozen=True)
class Update:
    id: int
    flags: int
    zone: str
    question: bytes                 # the zone section as received, echoed in the response
    prerequisites: tuple
    ops: tuple


@dataclass(frozen=True)
class _Record:
    name: str | None                # canonical, None when not a valid name
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes


def header_of(message: bytes) -> tuple[int, int] | None:
    """(id, flags) of a message with a full header, else None."""
    if len(message) < 12:
        return None
    ident, flags = struct.unpack_from(">HH", message)
    return ident, flags


def is_update(message: bytes) -> bool:
    """A query (QR clear) with opcode UPDATE."""
    head = header_of(message)
    return head is not None and not head[1] & 0x8000 and (head[1] >> 11) & 0xF == UPDATE_OPCODE


def parse(message: bytes, zones: Sequence[str]) -> Update:
    """The update in ``message`` (already stripped of its TSIG RR) for one of ``zones``;
    UpdateError with the rcode otherwise. Never raises anything else."""
    try:
        return _parse(bytes(message), zones)
    except UpdateError:
        raise
    except (DNSError, DnslibBufferError, struct.error, IndexError, ValueError,
            UnicodeError) as exc:
        raise UpdateError(FORMERR, f"malformed update: {str(exc)[:200]}") from None


def _parse(data: bytes, zones: Sequence[str]) -> Update:
    ident, flags, zocount, prcount, upcount, adcount = _HEADER.unpack_from(data)
    if zocount != 1:
        raise UpdateError(FORMERR, "the zone section must hold exactly one zone")
    buffer = DNSBuffer(data)
    buffer.offset = 12
    zone_label = buffer.decode_name()
    ztype, zclass = buffer.unpack("!HH")
    question = _question_wire(zone_label, ztype, zclass)
    zone = names.canonical(_text(zone_label))
    if ztype != SOA or zclass != IN:
        raise UpdateError(FORMERR, "the zone section must be <zone> SOA IN")
    if zone is None or zone not in zones:
        raise UpdateError(NOTAUTH, f"not authoritative for {_text(zone_label)!r}")
    prerequisites = [_record(buffer) for _ in range(prcount)]
    updates = [_record(buffer) for _ in range(upcount)]
    for _ in range(adcount):
        _record(buffer)                 # additional data: read and ignored (section 3.8)
    if buffer.offset != len(data):
        raise UpdateError(FORMERR, "bytes after the last record")
    return Update(ident, flags, zone, question,
                  tuple(_prerequisite(r, zone) for r in prerequisites),
                  tuple(_op(r, zone) for r in updates))


def _question_wire(label: DNSLabel, qtype: int, qclass: int) -> bytes:
    """The zone section re-encoded without compression (it may be echoed on its own)."""
    wire = b"".join(bytes([len(part)]) + part for part in label.label) + b"\x00"
    return wire + struct.pack(">HH", qtype, qclass)


def _text(label: DNSLabel) -> str:
    return ".".join(part.decode("latin-1") for part in label.label)


def _record(buffer: DNSBuffer) -> _Record:
    owner = buffer.decode_name()
    rtype, rclass, ttl, rdlength = buffer.unpack("!HHIH")
    rdata = buffer.get(rdlength)
    if len(rdata) != rdlength:
        raise UpdateError(FORMERR, "RDATA runs past the end of the message")
    text = _text(owner)
    return _Record(names.canonical(text) if text.isascii() else None, rtype, rclass, ttl,
                   bytes(rdata))


def _in_zone(record: _Record, zone: str) -> str:
    if record.name is None or not names.within(record.name, zone):
        raise UpdateError(NOTZONE, "a record's owner is outside the zone")
    return record.name


def _prerequisite(record: _Record, zone: str) -> Prerequisite:
    """RFC 2136 section 3.2 for one prerequisite RR."""
    if record.ttl != 0:
        raise UpdateError(FORMERR, "a prerequisite's TTL must be 0")
    name = _in_zone(record, zone)
    if record.rclass in (ANY, NONE):
        if record.rdata:
            raise UpdateError(FORMERR, "a class ANY or NONE prerequisite has no RDATA")
        if record.rtype == ANY_TYPE:
            return Prerequisite(NAME_IN_USE if record.rclass == ANY else NAME_NOT_IN_USE,
                                name, ANY_TYPE)
        return Prerequisite(RRSET_EXISTS if record.rclass == ANY else RRSET_NOT_EXISTS,
                            name, record.rtype)
    if record.rclass == IN and record.rtype not in _META_TYPES:
        return Prerequisite(RRSET_EQUALS, name, record.rtype,
                            frozenset([rdata_key(record.rtype, record.rdata)]))
    raise UpdateError(FORMERR, "a prerequisite of an unknown form")


def _op(record: _Record, zone: str) -> Op:
    """RFC 2136 section 3.4.1 prescan for one update RR, as a TXT operation."""
    name = _in_zone(record, zone)
    if record.rclass == IN:
        if record.rtype in _META_TYPES:
            raise UpdateError(FORMERR, "an add of a meta type")
        _txt_only(record)
        return Op(ADD, name, txt_value(record.rdata), record.ttl or DEFAULT_ADD_TTL)
    if record.rclass == ANY:
        if record.ttl != 0 or record.rdata:
            raise UpdateError(FORMERR, "a class ANY delete has TTL 0 and no RDATA")
        if record.rtype == ANY_TYPE:
            return Op(DELETE_NAME, name)
        _txt_only(record)
        return Op(DELETE_RRSET, name)
    if record.rclass == NONE:
        if record.ttl != 0:
            raise UpdateError(FORMERR, "a class NONE delete has TTL 0")
        if record.rtype in _META_TYPES:
            raise UpdateError(FORMERR, "a delete of a meta type")
        _txt_only(record)
        return Op(DELETE_VALUE, name, txt_value(record.rdata))
    raise UpdateError(FORMERR, "an update of an unknown class")


def _txt_only(record: _Record) -> None:
    if record.rtype != TXT:
        raise UpdateError(REFUSED, f"only TXT records are updated here (type {record.rtype})")


def txt_value(rdata: bytes) -> str:
    """The character-strings of TXT RDATA joined and decoded as strict UTF-8 (FORMERR
    otherwise, as the reference)."""
    strings, offset = [], 0
    while offset < len(rdata):
        length = rdata[offset]
        chunk = rdata[offset + 1:offset + 1 + length]
        if len(chunk) != length:
            raise UpdateError(FORMERR, "a TXT character-string runs past its RDATA")
        strings.append(chunk)
        offset += 1 + length
    if not strings:
        raise UpdateError(FORMERR, "TXT RDATA holds no character-string")
    try:
        return b"".join(strings).decode("utf-8")
    except UnicodeDecodeError:
        raise UpdateError(FORMERR, "a TXT value is not UTF-8") from None


def rdata_key(rtype: int, rdata: bytes) -> bytes:
    """How two RDATAs compare in a value-dependent prerequisite: TXT by its joined value
    (however it was split into character-strings), anything else byte for byte."""
    if rtype == TXT:
        return b"txt:" + txt_value(rdata).encode("utf-8")
    return bytes(rdata)


def merge_equal_prerequisites(prerequisites) -> list[Prerequisite]:
    """Value-dependent prerequisites of one (name, type) form one RRset (section 3.2.5)."""
    merged: dict = {}
    others = []
    for prerequisite in prerequisites:
        if prerequisite.kind != RRSET_EQUALS:
            others.append(prerequisite)
            continue
        key = (prerequisite.name, prerequisite.rtype)
        merged[key] = merged.get(key, frozenset()) | prerequisite.values
    return others + [Prerequisite(RRSET_EQUALS, name, rtype, values)
                     for (name, rtype), values in merged.items()]


def check_prerequisites(prerequisites, rrset: Callable[[str, int], set],
                        in_use: Callable[[str], bool]) -> int:
    """NOERROR when every prerequisite holds, else the rcode of the first that fails.
    ``rrset(name, type)`` gives the RDATA keys present (``rdata_key``); ``in_use(name)``
    whether the name owns any RR."""
    for prerequisite in merge_equal_prerequisites(prerequisites):
        name, rtype = prerequisite.name, prerequisite.rtype
        if prerequisite.kind == NAME_IN_USE and not in_use(name):
            return NXDOMAIN
        if prerequisite.kind == NAME_NOT_IN_USE and in_use(name):
            return YXDOMAIN
        if prerequisite.kind == RRSET_EXISTS and not rrset(name, rtype):
            return NXRRSET
        if prerequisite.kind == RRSET_NOT_EXISTS and rrset(name, rtype):
            return YXRRSET
        if prerequisite.kind == RRSET_EQUALS and rrset(name, rtype) != prerequisite.values:
            return NXRRSET
    return NOERROR


def response(message: bytes, rcode: int, question: bytes | None = None) -> bytes:
    """The response to the update ``message``: its ID, opcode UPDATE, QR, ``rcode``, and
    the zone section when it was readable (section 3.8); nothing else."""
    head = header_of(message) or (0, 0)
    flags = 0x8000 | (UPDATE_OPCODE << 11) | (head[1] & 0x0100) | (rcode & 0xF)
    count = 1 if question else 0
    return _HEADER.pack(head[0], flags, count, 0, 0, 0) + (question or b"")


def zone_section(message: bytes) -> bytes | None:
    """The zone section of ``message`` when it is one readable entry, else None."""
    try:
        if _HEADER.unpack_from(message)[2] != 1:
            return None
        buffer = DNSBuffer(bytes(message))
        buffer.offset = 12
        label = buffer.decode_name()
        return _question_wire(label, *buffer.unpack("!HH"))
    except (DNSError, DnslibBufferError, struct.error, IndexError, ValueError, UnicodeError):
        return None
