"""Static zone data: the value type the responder answers from, and the RFC 1035 master-file
loader that builds it.

Parsing uses dnslib's ``ZoneParser`` (lexer, ``$ORIGIN``/``$TTL``, parentheses, comments,
per-type RDATA parsers). This module adds what an operator needs on top: the file line in
every error, class/TTL in either order with unit suffixes (RFC 1035 section 5.1), decimal
``\\DDD`` escapes (dnslib reads them as octal), the RFC 3597 ``TYPEnnn \\# len hex`` form, ``@``
in RDATA names, and the checks of docs/decisions.md §4.3: exactly one SOA at the apex,
at least one NS there, glue for in-zone NS targets, every name inside the zone, canonical
lowercase owner names. The module only parses text; reading the file is the caller's job.
"""

import binascii
import bisect
import re
from dataclasses import dataclass, field
from types import MappingProxyType

from dnslib import CLASS, QTYPE, RD, RDMAP, RR, DNSBuffer, DNSLabel, ZoneParser
from dnslib.dns import parse_time
from dnslib.lex import WordLexer

from ..proto import names

MAX_TTL = 2**31 - 1           # RFC 2181 section 8
_TTL = re.compile(r"(?:\d+[smhdwSMHDW]?)+")
_SIMPLE_TTL = re.compile(r"\d+[smhdwSMHDW]?")
_GENERIC_TYPE = re.compile(r"TYPE(\d{1,5})")
# Types whose RDATA holds domain names, where a bare "@" means the origin.
_NAME_RDATA = {"NS", "CNAME", "SOA", "MX", "PTR", "SRV", "RP"}
# Meta and pseudo types that never appear in a zone (RFC 6895 section 3.1).
_META_TYPES = {QTYPE.OPT, QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR, 253, 254, QTYPE.TSIG, 249}
_UNSUPPORTED_TYPES = {39: "DNAME"}   # answering them needs synthesis the responder lacks


class ZoneError(ValueError):
    """A zone file the loader refuses; ``str()`` is ``source:line: message``."""

    def __init__(self, message: str, *, line: int | None = None, source: str = "<zone>"):
        self.message, self.line, self.source = message, line, source
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, eq=False)
class Zone:
    """One zone's static data: owner names are canonical (lowercase, no trailing dot) and
    every RRset is a tuple of dnslib ``RR`` objects that callers must not modify. Zones
    compare and hash by identity."""

    origin: str
    soa: RR
    rrsets: "MappingProxyType[tuple[str, int], tuple[RR, ...]]"
    labels: tuple[bytes, ...] = field(init=False)
    owners: frozenset = field(init=False, repr=False)     # names that own static RRs
    _ancestors: frozenset = field(init=False, repr=False)

    def __post_init__(self):
        owners = frozenset(name for name, _ in self.rrsets)
        ancestors = {above for name in owners for above in ancestors_of(name)
                     if names.within(above, self.origin)}
        object.__setattr__(self, "labels", tuple(self.origin.encode("ascii").split(b".")))
        object.__setattr__(self, "owners", owners)
        object.__setattr__(self, "_ancestors", frozenset(ancestors))

    @property
    def serial(self) -> int:
        return self.soa.rdata.times[0]

    @property
    def negative_ttl(self) -> int:
        """TTL of the SOA in negative answers: min(SOA TTL, SOA MINIMUM), RFC 2308 section 5."""
        return min(self.soa.ttl, self.soa.rdata.times[4])

    def rrset(self, name: str, rtype: int) -> tuple[RR, ...]:
        return self.rrsets.get((name, rtype), ())

    def has_name(self, name: str) -> bool:
        """True if ``name`` owns static RRs."""
        return name in self.owners

    def has_descendants(self, name: str) -> bool:
        """True if some static owner lies strictly below ``name`` (an empty non-terminal
        when ``name`` owns nothing itself)."""
        return name in self._ancestors

    def glue(self, ns_rrset) -> list[RR]:
        """A/AAAA RRs for the in-zone targets of ``ns_rrset`` (RFC 9471: in-domain glue)."""
        found = []
        for ns in ns_rrset:
            target = _text(ns.rdata.label)
            for rtype in (QTYPE.A, QTYPE.AAAA):
                found.extend(self.rrset(target, rtype))
        return found


def ancestors_of(name: str):
    """The names strictly above canonical ``name``, nearest first (``a.b.c`` gives
    ``b.c`` then ``c``)."""
    while "." in name:
        name = name.split(".", 1)[1]
        yield name


def above_apexes(zones) -> frozenset:
    """Names above some zone's apex: empty non-terminals of an enclosing zone when zones
    nest (RFC 8020)."""
    return frozenset(above for zone in zones for above in ancestors_of(zone.origin))


def _text(label: DNSLabel) -> str:
    """Lowercase presentation form of ``label`` without the trailing dot."""
    return names.folded(str(label))


def _lower(label: DNSLabel) -> DNSLabel:
    return DNSLabel(tuple(part.lower() for part in label.label))


class _DecimalEscapeLexer(WordLexer):
    """RFC 1035 section 5.1: ``\\DDD`` is a decimal octet (dnslib's lexer reads octal)."""

    def readescaped(self):
        c = self.read(1)
        if c not in self.escape_chars:
            self.escaped = False
            return c
        self.escaped = True
        digits = self.peek(3)
        if len(digits) == 3 and digits.isdigit():
            self.read(3)
            return chr(int(digits))
        return self.read(1)


class _Parser(ZoneParser):
    """dnslib's ZoneParser with line tracking and the RFC 1035 details it leaves out."""

    def __init__(self, text: str, origin: str, source: str):
        super().__init__(text, origin=origin, ttl=None)
        self.source = source
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.l = _DecimalEscapeLexer(text)
        self.l.commentchars = ";"
        self.l.nltok = ("NL", None)
        self.l.spacetok = ("SPACE", None)
        self.i = self._tracked(iter(self.l))
        self.line = 1
        self.record_line = None
        self.lines = []          # line of each record yielded by parse()

    def _position_line(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _tracked(self, tokens):
        directive = None
        for tok, val in tokens:
            consumed = self.l.f.tell() - len(self.l.q)
            self.line = self._position_line(max(consumed - 1, 0))
            if tok == "ATOM":
                if val.startswith("$"):
                    self._check_directive(val)
                    directive = val
                elif directive:
                    self._check_directive_argument(directive, val)
                    directive = None
                elif self.record_line is None:
                    self.record_line = self.line
            yield tok, val

    def _check_directive(self, val):
        if val == "$INCLUDE":
            raise ZoneError("$INCLUDE is not supported; put the records in this file",
                            line=self.line, source=self.source)
        if val not in ("$ORIGIN", "$TTL"):
            raise ZoneError(f"unknown directive {val} (only $ORIGIN and $TTL)",
                            line=self.line, source=self.source)

    def _check_directive_argument(self, directive, val):
        if directive == "$ORIGIN" and not val.endswith("."):
            raise ZoneError(f"$ORIGIN must be an absolute name ending in '.', got {val!r}",
                            line=self.line, source=self.source)
        if directive == "$TTL" and not _SIMPLE_TTL.fullmatch(val):
            raise ZoneError(f"$TTL must be a number with an optional s/m/h/d/w unit, "
                            f"got {val!r}", line=self.line, source=self.source)
        if directive == "$TTL" and _ttl_value(val) > MAX_TTL:
            raise ZoneError(f"$TTL {val} exceeds {MAX_TTL}", line=self.line, source=self.source)

    def parse_rr(self, rr):
        line, self.record_line = self.record_line, None
        if not any(rr):                       # a line of blanks and a comment
            return None
        self.lines.append(line)
        try:
            return self._record(list(rr), line)
        except ZoneError:
            raise
        except Exception as exc:              # dnslib raises many types on bad RDATA
            raise ZoneError(f"bad record: {exc}", line=line, source=self.source) from None

    def _record(self, rr, line):
        owner = self.parse_label(rr.pop(0))
        ttl, rclass = None, "IN"
        while rr and (_TTL.fullmatch(rr[0]) or rr[0].upper() in ("IN", "CH", "HS")):
            token = rr.pop(0)
            if token.upper() in ("IN", "CH", "HS"):
                rclass = token.upper()
            else:
                ttl = _ttl_value(token)
        if not rr:
            raise ZoneError("record has no type", line=line, source=self.source)
        if ttl is None:
            ttl = self.ttl
        if ttl is None:
            raise ZoneError("record has no TTL and no $TTL precedes it", line=line,
                            source=self.source)
        if ttl > MAX_TTL:
            raise ZoneError(f"TTL {ttl} exceeds {MAX_TTL}", line=line, source=self.source)
        mnemonic, rtype = self._rtype(rr.pop(0), line)
        rdata = self._rdata(mnemonic, rr, line)
        return RR(rname=owner, rtype=rtype, rclass=getattr(CLASS, rclass), ttl=ttl,
                  rdata=rdata)

    def _rtype(self, token, line):
        mnemonic = token.upper()
        generic = _GENERIC_TYPE.fullmatch(mnemonic)
        try:
            rtype = int(generic.group(1)) if generic else int(getattr(QTYPE, mnemonic))
        except Exception:
            raise ZoneError(f"unknown record type {token!r}", line=line,
                            source=self.source) from None
        if rtype > 65535:
            raise ZoneError(f"type {token} out of range", line=line, source=self.source)
        if rtype in _META_TYPES:
            raise ZoneError(f"{token} is a meta type, not zone data", line=line,
                            source=self.source)
        if rtype in _UNSUPPORTED_TYPES:
            raise ZoneError(f"{_UNSUPPORTED_TYPES[rtype]} is not supported", line=line,
                            source=self.source)
        return mnemonic, rtype

    def _rdata(self, mnemonic, rdata, line):
        if not rdata:
            raise ZoneError(f"{mnemonic} record has no data", line=line, source=self.source)
        if rdata[0] == "\\#":                 # RFC 3597 section 5 generic encoding
            return _generic_rdata(rdata, line, self.source)
        if mnemonic in _NAME_RDATA:
            rdata = [str(self.origin) if token == "@" else token for token in rdata]
        try:
            return RDMAP.get(mnemonic, RD).fromZone(rdata, self.origin)
        except Exception:                     # dnslib raises many types on bad RDATA
            # Say what the data should look like; dnslib's own message ("invalid literal
            # for int()") names its internals, not the operator's mistake.
            shape = RDATA_SHAPES.get(mnemonic, GENERIC_SHAPE)
            raise ZoneError(f"bad {mnemonic} data {' '.join(rdata)!r}: expected {shape}",
                            line=line, source=self.source) from None


# The presentation format of each common type's RDATA (RFC 1035 section 3.3 and 5.1,
# RFC 3596, RFC 2782, RFC 8659), for error messages.
RDATA_SHAPES = {
    "SOA": "MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM (two names, then five numbers)",
    "A": "an IPv4 address, e.g. 192.0.2.1",
    "AAAA": "an IPv6 address, e.g. 2001:db8::1",
    "NS": "a domain name", "CNAME": "a domain name", "PTR": "a domain name",
    "DNAME": "a domain name",
    "MX": "PREFERENCE EXCHANGE (a number from 0 to 65535, then a domain name)",
    "SRV": "PRIORITY WEIGHT PORT TARGET (three numbers from 0 to 65535, then a domain name)",
    "TXT": "one or more character-strings of at most 255 bytes, each in double quotes if "
           "it holds spaces",
    "CAA": "FLAGS TAG VALUE, e.g. 0 issue \"ca.example\"",
}
GENERIC_SHAPE = "the type's RFC presentation format, or \\# LENGTH HEX (RFC 3597)"


def _ttl_value(token: str) -> int:
    """A TTL with optional unit suffixes, e.g. ``3600``, ``1h30m`` (BIND style)."""
    if token.isdigit():
        return int(token)
    return sum(parse_time(part) for part in re.findall(r"\d+[smhdwSMHDW]?", token))


def _generic_rdata(tokens, line, source) -> RD:
    try:
        length = int(tokens[1])
        data = binascii.unhexlify("".join(tokens[2:]))
    except (IndexError, ValueError, binascii.Error):
        raise ZoneError("bad RFC 3597 data: expected '\\# <length> <hex>'", line=line,
                        source=source) from None
    if len(data) != length:
        raise ZoneError(f"RFC 3597 data is {len(data)} bytes, length says {length}",
                        line=line, source=source)
    return RD(data)


def parse_zone(text: str, *, origin: str | None = None, source: str = "<zone>") -> Zone:
    """Parse and validate an RFC 1035 master file; raise ``ZoneError`` naming the line.

    ``origin`` is the initial ``$ORIGIN`` (and must then be the SOA owner); without it the
    file's own ``$ORIGIN`` or absolute names decide, and the SOA owner is the apex.
    """
    start = None
    if origin is not None:
        start = names.canonical(origin)
        if start is None:
            raise ZoneError(f"invalid origin {origin!r}", source=source)
    parser = _Parser(text, (start or "") + ".", source)
    records = []
    try:
        for rr in parser.parse():
            if rr is not None:
                records.append((parser.lines[-1], rr))
    except ZoneError:
        raise
    except Exception as exc:
        raise ZoneError(f"cannot parse: {exc}", line=parser.line, source=source) from None
    return _validated(records, start, source)


def _validated(records, origin, source) -> Zone:
    soas = [(line, rr) for line, rr in records if rr.rtype == QTYPE.SOA]
    if not soas:
        raise ZoneError("no SOA record (exactly one is required at the apex)", source=source)
    if len(soas) > 1:
        raise ZoneError("a second SOA record (exactly one is required at the apex)",
                        line=soas[1][0], source=source)
    soa_line, soa = soas[0]
    apex = names.canonical(_text(soa.rname))
    if apex is None or (origin is not None and apex != origin):
        raise ZoneError(f"the SOA owner {soa.rname} is not the zone apex {origin}",
                        line=soa_line, source=source)
    rrsets: dict[tuple[str, int], list[RR]] = {}
    for line, rr in records:
        name = _check_record(rr, apex, line, source)
        rr.rname = _lower(rr.rname)
        bucket = rrsets.setdefault((name, rr.rtype), [])
        if not any(_same_rdata(rr, kept) for kept in bucket):   # RFC 2181 section 5
            bucket.append(rr)
    _check_structure(rrsets, apex, records, source)
    for bucket in rrsets.values():             # RFC 2181 section 5.2: one TTL per RRset
        ttl = min(rr.ttl for rr in bucket)
        for rr in bucket:
            rr.ttl = ttl
    frozen = {key: tuple(bucket) for key, bucket in rrsets.items()}
    return Zone(origin=apex, soa=frozen[(apex, QTYPE.SOA)][0],
                rrsets=MappingProxyType(frozen))


def _same_rdata(a: RR, b: RR) -> bool:
    return _packed_rdata(a) == _packed_rdata(b)


def _packed_rdata(rr: RR) -> bytes:
    buffer = DNSBuffer()
    rr.rdata.pack(buffer)
    return buffer.data


def _check_record(rr: RR, apex: str, line: int, source: str) -> str:
    text = _text(rr.rname)
    name = names.canonical(text)
    if name is None:
        hint = " (wildcards are not supported)" if "*" in text else ""
        raise ZoneError(f"invalid owner name {text!r}{hint}", line=line, source=source)
    if not names.within(name, apex):
        raise ZoneError(f"{name} is outside the zone {apex}", line=line, source=source)
    if rr.rclass != CLASS.IN:
        raise ZoneError(f"class {CLASS.get(rr.rclass)} is not supported (only IN)",
                        line=line, source=source)
    if rr.rtype == QTYPE.NS and name != apex:
        raise ZoneError(f"NS at {name}: delegations are not supported (NS only at the apex)",
                        line=line, source=source)
    return name


def _check_structure(rrsets, apex, records, source):
    ns_rrset = rrsets.get((apex, QTYPE.NS))
    if not ns_rrset:
        raise ZoneError(f"no NS record at the apex {apex}", source=source)
    line_of = {id(rr): line for line, rr in records}
    for ns in ns_rrset:
        target = _text(ns.rdata.label)
        if names.within(target, apex) and not (rrsets.get((target, QTYPE.A))
                                               or rrsets.get((target, QTYPE.AAAA))):
            raise ZoneError(f"NS target {target} is inside the zone but has no A/AAAA glue",
                            line=line_of[id(ns)], source=source)
    for (name, rtype), bucket in rrsets.items():
        if rtype == QTYPE.CNAME and len({t for n, t in rrsets if n == name}) > 1:
            raise ZoneError(f"CNAME at {name} next to other data (RFC 1034 section 3.6.2)",
                            line=line_of[id(bucket[0])], source=source)
        if rtype == QTYPE.CNAME and len(bucket) > 1:
            raise ZoneError(f"more than one CNAME at {name} (RFC 2181 section 10.1)",
                            line=line_of[id(bucket[1])], source=source)
