"""The hand-written fast path for the common queries (docs/decisions.md §4.1: dnslib costs
~150-300 us a query, this ~10 us): a TXT question for a name the store holds live values
for, and the negative answers a polling client mostly gets (an empty slot: NXDOMAIN; an
empty non-terminal asked by a QNAME-minimising resolver: NODATA).

It answers only this exact shape and returns None for anything else, so the responder's
dnslib path decides:

* header: QR=0, opcode QUERY, QDCOUNT=1, ANCOUNT=NSCOUNT=0, ARCOUNT 0 or 1;
* question: an uncompressed name inside one of our zones, class IN, any type but ANY,
  AXFR, IXFR and OPT;
* additional: nothing, or exactly one OPT with owner root, EDNS version 0, extended rcode
  0 and no options (any other OPT goes the slow way: cookies, NSID, BADVERS, FORMERR);
* the name owns no static zone data (the apex never takes this path);
* over TCP, the response fits 65,535 bytes (admission caps an RRset well below that;
  only data stored before the cap can exceed it, and the dnslib path answers SERVFAIL).

An answer over the UDP size limit is truncated here as the dnslib path does it (RFC 2181
section 9: no partial RRsets): TC set, the question and our OPT only, so a large RRset asked
over UDP costs a splice, not a dnslib rendering, and is cached like any other answer.

A positive answer (TXT with live values) is spliced: header, the question bytes as received
(0x20 case kept), one RR per live entry (``c00c`` pointer to the question name, TXT IN, the
RRset's TTL, the blob's own rdlength and rdata) and our OPT when the query had one. A
negative answer carries the zone SOA (serial + store generation, TTL min(SOA TTL, MINIMUM))
with its names compressed exactly as dnslib's encoder does, so that tests/test_dns_lean.py
can hold every byte to the dnslib path.

At a signed zone a query with DO is answered here only when it is a positive TXT answer
whose RRSIGs were stored when the name was written (``rrsig_store``): the blob and the
record come from one read transaction, the record must have been made with the zone's
keys and TTL now, be inside its validity window for the answer's TTL, and have a step for
exactly the live entries; then the RRSIG RRs (``c00c``, RRSIG IN, the answer's TTL, the
stored tails) follow the TXT RRs, and the OPT echoes DO. Anything else at a signed zone
with DO (denials, other types, no fitting record) goes to the dnslib path, which signs on
the fly: a stored signature is never served for an RRset it does not cover.

The shape, the name (by the rule of ``proto.names.canonical``) and the plain OPT are checked
by one regular expression over the whole query (``_SHAPE``); anything it does not match
goes the slow way. The store is read by the name's reversed-label key, built here from the
wire labels (``packed_txt_at``, ``descendants_live_until``). Each answer also says until when it stays byte-identical (``until_ms``,
the last ``round(now * 1000)`` at which it does, provided the store does not change): the
answer cache in the responder keeps it that long.
"""

import struct

import re

from ..proto.names import OWNER_NAME_WIRE
from . import rrsig_store
from .rrblob import FOREVER_MS, live_wire_rdata
from .zone import above_apexes


# The one query shape this path answers, in one match: the header (QR=0, opcode QUERY,
# QDCOUNT=1, ANCOUNT=NSCOUNT=0, ARCOUNT 0 or 1: group 1 when 1), an uncompressed name of
# owner-name labels (group 2, ``proto.names.OWNER_NAME_WIRE``: names the store cannot hold
# go the slow way), the type (group 3), class IN and, when ARCOUNT is 1, a plain
# OPT at the end: owner root, any payload, extended rcode 0, version 0, any flags, no
# options (RFC 6891 section 6.1.2).
_SHAPE = re.compile(
    rb"..[\x00-\x07].\x00\x01\x00\x00\x00\x00\x00(?:\x00|(\x01))"
    rb"(" + OWNER_NAME_WIRE + rb")\x00(..)\x00\x01"
    rb"(?(1)\x00\x00\x29..\x00\x00..\x00\x00)", re.DOTALL).fullmatch
_RR_HEAD = b"\xc0\x0c\x00\x10\x00\x01"
_RRSIG_HEAD = b"\xc0\x0c\x00\x2e\x00\x01"
_OPT_HEAD = b"\x00\x00\x29"
_MIN_UDP = 512
_TXT = 16
_DECLINED_TYPES = frozenset({41, 251, 252, 255})       # OPT, IXFR, AXFR, ANY
_SERIAL = struct.Struct(">I").pack
_NO_RECORDS = ((), FOREVER_MS)


class _ZoneInfo:
    """What a negative answer needs from one zone, computed once."""

    __slots__ = ("origin", "suffix", "depth", "zone", "soa_head", "mname", "rname", "timers",
                 "serial", "packed_names", "tail")

    def __init__(self, zone):
        soa = zone.soa
        self.origin, self.depth = zone.origin, len(zone.labels)
        self.suffix = ("." + zone.origin).encode("ascii")
        self.zone = zone
        self.soa_head = b"\x00\x06\x00\x01" + struct.pack(">I", zone.negative_ttl)
        self.mname, self.rname = tuple(soa.rdata.mname.label), tuple(soa.rdata.rname.label)
        self.serial = soa.rdata.times[0]
        self.timers = struct.pack(">IIII", *soa.rdata.times[1:])
        # MNAME + RNAME as compressed against a question, by the shape that decides it
        # (see _soa_rdata): at most 4 x 256 x 256 small entries, so no bound is needed.
        self.packed_names = {}
        self.tail = (None, b"")             # (generation, serial + timers)


class LeanPath:
    """Built once per responder from the zones, the store and two settings."""

    def __init__(self, zones, store, *, answer_ttl: int, edns_payload: int,
                 signers=dict, counters=None):
        # Most specific zone first, as the responder picks it.
        self._zones = [_ZoneInfo(z) for z in sorted(zones, key=lambda z: -len(z.labels))]
        self._static = frozenset(name.encode("ascii")
                                 for zone in zones for name in zone.owners)
        self._above_apexes = above_apexes(zones)
        self._store = store
        self._ttl = answer_ttl
        # Our OPT record, by the DO bit of the query (echoed, RFC 3225 section 3).
        self._opts = {do: _OPT_HEAD + struct.pack(">H", edns_payload) + bytes((0, 0, do, 0, 0, 0))
                      for do in (0, 0x80)}
        # ``signers()``: {origin: ZoneSigner} of the signed zones now (a rollover may swap
        # them); a DO query there gets the RRSIGs stored with the blob, or the dnslib path.
        self._signers = signers
        self._profiles = {}             # origin -> (signer, the profile its records carry)
        self._counted = counters.signed if counters is not None else {"stored": 0,
                                                                       "fallback": 0}

    def answer(self, query: bytes, now: float, max_udp: int | None):
        """``(response, qtype, until_ms)``, or None to leave the query to the dnslib path."""
        query = bytes(query)                           # no copy when it already is bytes
        shape = _SHAPE(query)
        if shape is None:
            return None
        name_end, qend = shape.end(2), shape.end(3) + 2
        qtype = (query[name_end + 1] << 8) | query[name_end + 2]
        if name_end > 266 or qtype in _DECLINED_TYPES:     # 255-octet names (RFC 1035 3.1)
            return None
        labels = _labels(query, name_end)
        raw = b".".join(labels).lower()
        if raw in self._static:
            return None
        for info in self._zones:
            if raw.endswith(info.suffix):
                break
        else:
            return None
        has_opt = shape.start(1) != -1
        if has_opt:
            payload = (query[qend + 3] << 8) | query[qend + 4]
            limit = 65535 if max_udp is None else min(max_udp, max(payload, _MIN_UDP))
        else:
            limit = 65535 if max_udp is None else min(max_udp, _MIN_UDP)
        try:
            if has_opt and query[qend + 7] & 0x80:
                answered = self._do_bit(query, labels, qend, qtype, info, now)
            else:
                answered = self._respond(query, labels, qend, qtype, raw, info, now, has_opt)
        except Exception:       # a store failure: the slow path answers SERVFAIL
            return None
        if answered is None:
            return None
        response = answered[0]
        if len(response) > limit:
            if max_udp is None:
                return None
            response = _truncated(response, qend, has_opt)
        return response, qtype, answered[1]

    def _do_bit(self, query, labels, qend, qtype, info, now):
        """A query with DO: signed (``_signed``) at a signed zone, else as any other."""
        signer = self._signers().get(info.origin)
        if signer is not None:
            return self._signed(query, labels, qend, qtype, info.origin, signer, now)
        raw = b".".join(labels).lower()
        return self._respond(query, labels, qend, qtype, raw, info, now, True)

    def _respond(self, query, labels, qend, qtype, raw, info, now, has_opt):
        """``(response, until_ms)``."""
        now_ms = round(now * 1000)        # the store's rounding (changelog.to_ms)
        key = b".".join(reversed(labels)).lower()       # proto.names.reversed_key, from the wire
        blob = self._store.packed_txt_at(key)
        records, soonest = live_wire_rdata(blob, now_ms) if blob else _NO_RECORDS
        if has_opt:
            opt, arcount = self._opts[query[qend + 7] & 0x80], b"\x00\x01"
        else:
            opt, arcount = b"", b"\x00\x00"
        if records and qtype == _TXT:
            # Served TTL = min(configured, remaining lifetime). It stays the same, and every
            # value stays live, while now_ms <= soonest - ttl * 1000 (and < soonest).
            ttl = min(self._ttl * 1000, soonest - now_ms) // 1000
            head = _RR_HEAD + ttl.to_bytes(4, "big")
            return b"".join((query[:2], bytes((0x84 | (query[2] & 0x01), query[3] & 0x10)),
                             b"\x00\x01", len(records).to_bytes(2, "big"), b"\x00\x00",
                             arcount, query[12:qend], head, head.join(records),
                             opt)), soonest - max(ttl * 1000, 1)
        rcode, until_ms = self._negative(records, soonest, raw.decode(), key, info, now_ms)
        apex = 12 + sum(len(label) + 1 for label in labels[:len(labels) - info.depth])
        rdata = self._soa_rdata(labels, info, qend + 12)
        return b"".join((query[:2], bytes((0x84 | (query[2] & 0x01), (query[3] & 0x10) | rcode)),
                         b"\x00\x01\x00\x00\x00\x01", arcount, query[12:qend],
                         (0xC000 | apex).to_bytes(2, "big"), info.soa_head,
                         len(rdata).to_bytes(2, "big"), rdata, opt)), until_ms

    def _signed(self, query, labels, qend, qtype, origin, signer, now):
        """``(response, until_ms)`` for a DO query at a signed zone: a positive TXT answer
        with the RRSIGs stored for exactly its live RRset (``rrsig_store``), or None for
        the dnslib path (denials, other types, no stored RRSIGs that fit: on-the-fly)."""
        if qtype != _TXT:
            return None
        now_ms = round(now * 1000)
        key = b".".join(reversed(labels)).lower()
        blob, record = self._store.signed_txt_at(key)
        records, soonest = live_wire_rdata(blob, now_ms) if blob else _NO_RECORDS
        if not records:
            return None
        ttl = min(self._ttl * 1000, soonest - now_ms) // 1000
        settings = signer.settings
        found = rrsig_store.lookup(record, self._profile(origin, signer), len(records),
                                   now_ms, ttl, settings.skew + settings.refresh)
        if found is None:
            self._counted["fallback"] += 1
            return None
        self._counted["stored"] += 1
        tails, signed_until = found
        ttl_bytes = ttl.to_bytes(4, "big")
        head, sig_head = _RR_HEAD + ttl_bytes, _RRSIG_HEAD + ttl_bytes
        opt = self._opts[0x80]
        return b"".join((query[:2], bytes((0x84 | (query[2] & 0x01), query[3] & 0x10)),
                         b"\x00\x01", (len(records) + len(tails)).to_bytes(2, "big"),
                         b"\x00\x00\x00\x01", query[12:qend], head, head.join(records),
                         sig_head, sig_head.join(tails), opt)), \
            min(soonest - max(ttl * 1000, 1), signed_until)

    def _profile(self, origin, signer) -> bytes:
        known = self._profiles.get(origin)
        if known is None or known[0] is not signer:
            known = self._profiles[origin] = (
                signer, rrsig_store.profile(signer.keys_for(_TXT), self._ttl))
        return known[1]

    def _negative(self, records, soonest, name, key, info, now_ms):
        """``(rcode, until_ms)``: NODATA for a name that exists (RFC 8020: values of other
        types, static data below it, a zone below it, live stored names below it), else
        NXDOMAIN. Expired values never come back, so NXDOMAIN holds until a write."""
        if records:
            return 0, soonest - 1
        if info.zone.has_descendants(name) or name in self._above_apexes:
            return 0, FOREVER_MS
        until_ms = self._store.descendants_live_until(key, now_ms)
        return (3, FOREVER_MS) if until_ms is None else (0, until_ms)

    def _soa_rdata(self, labels, info, offset):
        """SOA RDATA at ``offset`` with MNAME and RNAME compressed as dnslib does: against
        every suffix of the question name (same case), then of the names written before.

        Only question suffixes that are also suffixes of MNAME or RNAME can be pointed at,
        and where they start follows from where the question ends (``offset``); so the
        compressed names depend on the zone, ``offset`` and how many trailing labels the
        question shares with each name, and are packed once per such shape. The serial
        (file serial + store generation) is packed once per generation."""
        shape = (offset, _shared_suffix(labels, info.mname), _shared_suffix(labels, info.rname))
        names = info.packed_names.get(shape)
        if names is None:
            names = info.packed_names[shape] = _pack_names(labels, info, offset)
        generation = self._store.generation()
        tail = info.tail
        if tail[0] != generation:
            serial = (info.serial + generation) & 0xFFFFFFFF
            tail = info.tail = (generation, _SERIAL(serial) + info.timers)
        return names + tail[1]


def _labels(query: bytes, name_end: int) -> list:
    """The labels of the question name (checked by ``_SHAPE``), which ends at ``name_end``."""
    labels, pos = [], 12
    while pos < name_end:
        end = pos + 1 + query[pos]
        labels.append(query[pos + 1:end])
        pos = end
    return labels


def _truncated(response: bytes, qend: int, has_opt: bool) -> bytes:
    """``response`` cut to its header (TC set, no records), question and OPT."""
    return b"".join((response[:2], bytes((response[2] | 0x02, response[3])),
                     b"\x00\x01\x00\x00\x00\x00", response[10:qend],
                     response[-11:] if has_opt else b""))


def _shared_suffix(labels, name) -> int:
    """How many trailing labels ``labels`` and ``name`` have in common (exact bytes)."""
    shared, most = 0, min(len(labels), len(name))
    while shared < most and labels[-1 - shared] == name[-1 - shared]:
        shared += 1
    return shared


def _pack_names(labels, info, offset) -> bytes:
    known, at = {}, 12
    for i, label in enumerate(labels):
        known[tuple(labels[i:])] = at
        at += len(label) + 1
    out = bytearray()
    for name in (info.mname, info.rname):
        _compress(name, known, offset, out)
    return bytes(out)


def _compress(name, known, base, out) -> None:
    """Append ``name`` to ``out`` (which starts at message offset ``base``): the longest
    already-written suffix becomes a pointer; each suffix written here becomes known."""
    for i in range(len(name)):
        suffix = name[i:]
        pointer = known.get(suffix)
        if pointer is not None:
            out += (0xC000 | pointer).to_bytes(2, "big")
            return
        known[suffix] = base + len(out)
        out.append(len(name[i]))
        out += name[i]
    out.append(0)
