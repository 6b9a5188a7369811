"""Zone transfers out: AXFR (RFC 5936) and IXFR (RFC 1995), with ACLs and TSIG (RFC 8945).

``Transfers.start(query, now=..., client=..., tcp=...)`` judges a transfer request and
returns a ``Transfer`` whose ``next_message(now)`` hands out the answer one message at a
time (the TCP transport writes them as the client reads, ``xfr_pump``), or None at the end.
The order of checks: a malformed request is FORMERR; a bad TSIG is NOTAUTH with the TSIG
error (section 5.3.2 of RFC 8945); a name that is not one of our zone apexes is NOTAUTH
(RFC 5936 section 2.2.1); a class other than IN, a client outside the zone's ACL, or a
missing key where the zone demands one is REFUSED with EDE 18 "Prohibited" (counted).

What a transfer holds: the zone file's records and every present TXT value of the store at
and below the apex (``store.journal``: tombstones out, expiry ignored until the sweep), all
from one store snapshot whose generation gives the serial (file serial + generation, as in
every SOA the responder serves). Values carry the configured answer TTL. IXFR answers the
condensed difference from the journal when it reaches back to the client's serial, the
full zone (AXFR-style) otherwise, and one SOA when the client is current. Over UDP, IXFR
is answered with the current SOA (RFC 1995 section 2 lets the client retry over TCP) and
AXFR is refused (RFC 5936 section 4.2).
"""

import ipaddress
from dataclasses import dataclass, field

from dnslib import RR, SOA, DNSLabel, DNSRecord

from ..proto import names
from . import edns, query as wire, tsig, xfr_wire

QUERY = 0
NOERROR, FORMERR, REFUSED, NOTAUTH = 0, 1, 5, 9
IN = 1
AXFR, IXFR, SOA_TYPE = 252, 251, 6
SNAPSHOT_BATCH = 256            # store records read per step: bounds one reactor turn
PENDING = b""                   # next_message: nothing yet, ask again on a later turn


@dataclass(frozen=True)
class TransferPolicy:
    """Who may transfer one zone and whom to NOTIFY. ``allow``: ip networks (empty: no
    transfers); ``keys``: TSIG keys, of which a request must carry one when not empty;
    ``notify``: ``(host, port)`` secondaries; ``notify_key`` signs the NOTIFY."""

    allow: tuple = ()
    keys: tuple = ()
    notify: tuple = ()
    notify_key: tsig.TsigKey | None = None

    def key(self, name: str):
        for key in self.keys:
            if key.name == name:
                return key
        return None

    def admits(self, client: str | None, verdict: tsig.Verdict) -> bool:
        if not self.allow or client is None:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        if not any(address in network for network in self.allow):
            return False
        return not self.keys or verdict.status == "ok"


KINDS = ("axfr", "ixfr")
RESULTS = ("full", "incremental", "current", "udp-soa", "refused", "notauth", "formerr")


@dataclass
class TransferCounters:
    """Plain integers read at scrape time. ``requests`` is keyed by (kind, result): kind
    axfr/ixfr, result full, incremental, current, refused, notauth, formerr."""

    requests: dict = field(default_factory=dict)
    messages: int = 0
    bytes: int = 0

    def count(self, kind: str, result: str) -> None:
        key = (kind, result)
        self.requests[key] = self.requests.get(key, 0) + 1


def is_transfer(query: bytes) -> bool:
    """A cheap look at a query: a QUERY (QR clear) whose first question is AXFR or IXFR."""
    if len(query) < 17 or query[2] & 0xF8 or query[4:6] == b"\x00\x00":
        return False
    offset = 12
    while offset < len(query):
        length = query[offset]
        if length == 0:
            break
        if length > 63:
            return False
        offset += 1 + length
    qtype = query[offset + 1:offset + 3]
    return len(qtype) == 2 and int.from_bytes(qtype, "big") in (AXFR, IXFR)


def serial_newer(a: int, b: int) -> bool:
    """RFC 1982 section 3.2: ``a`` is greater than ``b``."""
    return 0 < (a - b) % 2**32 < 2**31


class Transfer:
    """One transfer answer: messages signed as they go out (RFC 8945 section 5.3.1)."""

    def __init__(self, kind: str, messages, verdict: tsig.Verdict):
        self.kind = kind
        self._messages = messages
        self._verdict = verdict
        self._signer = tsig.StreamSigner(verdict) if verdict.status == "ok" else None
        self.sent = 0

    def next_message(self, now: float) -> bytes | None:
        """The next message, PENDING when a step produced none yet, None at the end."""
        if self._messages is None:
            return None
        try:
            message = next(self._messages)
        except StopIteration:
            self._messages = None
            return None
        if message is PENDING:
            return PENDING
        self.sent += 1
        if self._signer is not None:
            return self._signer.sign(message, now=now)
        return tsig.finish(message, self._verdict, now=now)

    def close(self) -> None:
        if self._messages is not None:
            self._messages.close()
            self._messages = None


class Transfers:
    """Transfer answers for ``zones`` from ``store`` under per-origin ``policies``."""

    def __init__(self, zones, policies, store, *, ttl: int, edns_payload: int = 1232,
                 target: int = xfr_wire.MESSAGE_TARGET, counters=None):
        self.zones = {zone.origin: zone for zone in zones}
        self.policies = dict(policies)
        self.store = store
        self.ttl = ttl
        self.edns_payload = edns_payload
        self.target = target
        self.counters = counters if counters is not None else TransferCounters()
        self._inner = {origin: tuple(o for o in self.zones
                                     if o != origin and names.within(o, origin))
                       for origin in self.zones}
        # The same, as labels below the outer apex (what a snapshot hands out).
        self._inner_labels = {
            origin: tuple(tuple(o[:len(o) - len(origin) - 1].encode("ascii").split(b"."))
                          for o in inner)
            for origin, inner in self._inner.items()}

    def key(self, name: str):
        """The transfer key named ``name`` of any zone (signed SOA queries, NOTIFY)."""
        for policy in self.policies.values():
            found = policy.key(name)
            if found is not None:
                return found
        return None

    def start(self, query: bytes, *, now: float, client: str | None,
              tcp: bool) -> Transfer | None:
        """Judge ``query``; None when nothing must be sent (a runt, a response)."""
        q = wire.parse(query)
        if q is None or q.qr:
            return None
        kind = "ixfr" if q.qtype == IXFR else "axfr"
        if q.error is not None or q.opcode != QUERY:
            return self._refuse(kind, "formerr", q, FORMERR, tsig.Verdict("unsigned"))
        origin = _origin(q.qname)
        zone = self.zones.get(origin)
        policy = self.policies.get(origin)
        lookup = policy.key if policy is not None else (lambda name: None)
        verdict = tsig.verify(query, lookup, now=now)
        if verdict.status == "formerr":
            return self._refuse(kind, "formerr", q, FORMERR, tsig.Verdict("unsigned"))
        if verdict.status == "notauth":
            return self._refuse(kind, "notauth", q, NOTAUTH, verdict)
        if zone is None:
            return self._refuse(kind, "notauth", q, NOTAUTH, verdict)
        if q.qclass != IN or policy is None or not policy.admits(client, verdict):
            return self._refuse(kind, "refused", q, REFUSED, verdict, ede=True)
        if not tcp and kind == "axfr":
            return self._refuse(kind, "refused", q, REFUSED, verdict, ede=True)
        if kind == "axfr":
            self.counters.count(kind, "full")
            return Transfer(kind, self._axfr(zone, q), verdict)
        serial = _client_serial(verdict.unsigned)
        if serial is None:
            return self._refuse(kind, "formerr", q, FORMERR, verdict)
        return Transfer(kind, self._ixfr(zone, q, serial, tcp), verdict)

    # Refusals: one message, no records.

    def _refuse(self, kind, result, q, rcode, verdict, *, ede=False) -> Transfer:
        self.counters.count(kind, result)
        question = b""
        if q.qname is not None and q.qdcount == 1:
            question = xfr_wire.question_wire(q.qname, q.qtype, q.qclass)
        additional = []
        if q.opt is not None and rcode != FORMERR:
            options = [xfr_wire.ede_option(edns.EDE_PROHIBITED)] if ede else []
            additional.append(xfr_wire.opt_record(self.edns_payload, options))
        flags = xfr_wire.FLAG_QR | (q.flags & 0x7900) | rcode
        message = xfr_wire.message(q.id, flags, question, additional=additional)
        return Transfer(kind, iter([message]), verdict)

    # Answers.

    def _filler(self, q) -> xfr_wire.MessageFiller:
        flags = xfr_wire.FLAG_QR | xfr_wire.FLAG_AA | (q.flags & 0x0100)
        question = xfr_wire.question_wire(q.qname, q.qtype, q.qclass)
        return xfr_wire.MessageFiller(q.id, flags, question, self.target)

    def _soa(self, zone, generation: int) -> bytes:
        return soa_record(zone, (zone.serial + generation) % 2**32)

    def _axfr(self, zone, q):
        """SOA, the zone file's records, the store's values, SOA (RFC 5936 section 2.2)."""
        filler = self._filler(q)
        snapshot = self.store.zone_snapshot(zone.origin)
        try:
            soa = self._soa(zone, snapshot.generation)
            yield from _emit(filler, [soa] + _static_records(zone))
            yield from self._values(zone, snapshot, filler)
            yield from _emit(filler, [soa])
            yield filler.flush()
        finally:
            snapshot.close()

    def _values(self, zone, snapshot, filler):
        ttl, inner = self.ttl, self._inner_labels[zone.origin]
        owner, record = xfr_wire.owner_from_labels, xfr_wire.txt_record
        while not snapshot.done:
            produced = False
            for labels, value in snapshot.batch(SNAPSHOT_BATCH):
                if inner and any(labels[len(labels) - len(o):] == o
                                 for o in inner if len(labels) >= len(o)):
                    continue
                full = filler.add(record(owner(labels), value, ttl))
                if full is not None:
                    produced = True
                    yield full
            if not produced:
                yield PENDING

    def _ixfr(self, zone, q, client_serial: int, tcp: bool):
        """The condensed difference (RFC 1995 section 4), or one of its fallbacks."""
        generation = self.store.generation()
        serial = (zone.serial + generation) % 2**32
        current_soa = self._soa(zone, generation)
        filler = self._filler(q)
        if not tcp or client_serial == serial or serial_newer(client_serial, serial):
            self.counters.count("ixfr", "current" if tcp else "udp-soa")
            yield from _emit(filler, [current_soa])
            yield filler.flush()
            return
        since = generation - (serial - client_serial) % 2**32
        current, diff = self.store.journal_since(since) if since >= 0 else (generation, None)
        if diff is None:
            self.counters.count("ixfr", "full")
            yield from self._axfr(zone, q)
            return
        self.counters.count("ixfr", "incremental")
        yield from self._difference(zone, filler, client_serial, current, diff)

    def _difference(self, zone, filler, client_serial, current, diff):
        new_soa = self._soa(zone, current)
        old_soa = soa_record(zone, client_serial)
        deleted, added = (self._in_zone(zone, part) for part in diff)
        yield from _emit(filler, [new_soa, old_soa])
        yield from _emit(filler, deleted)
        yield from _emit(filler, [new_soa])
        yield from _emit(filler, added)
        yield from _emit(filler, [new_soa])
        yield filler.flush()

    def _in_zone(self, zone, pairs) -> list:
        origin, inner, ttl = zone.origin, self._inner[zone.origin], self.ttl
        return [xfr_wire.txt_record(xfr_wire.owner_below(name, origin), value, ttl)
                for name, value in pairs
                if names.within(name, origin)
                and not any(names.within(name, o) for o in inner)]


def _emit(filler, records):
    for record in records:
        full = filler.add(record)
        if full is not None:
            yield full


def _origin(labels) -> str | None:
    if labels is None:
        return None
    try:
        text = b".".join(labels).decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    return text if names.canonical(text) == text else None


def soa_record(zone, serial: int) -> bytes:
    data = zone.soa.rdata
    rr = RR(DNSLabel(zone.origin), SOA_TYPE, IN, zone.soa.ttl,
            SOA(data.mname, data.rname, (serial,) + tuple(data.times[1:])))
    return xfr_wire.dnslib_record(rr)


def _static_records(zone) -> list:
    """The zone file's records but the apex SOA, which opens and closes the transfer."""
    return [xfr_wire.dnslib_record(rr) for (name, rtype), rrset in sorted(zone.rrsets.items())
            if not (name == zone.origin and rtype == SOA_TYPE) for rr in rrset]


def _client_serial(unsigned: bytes) -> int | None:
    """The serial of the SOA in an IXFR request's authority section (RFC 1995 section 3)."""
    try:
        record = DNSRecord.parse(unsigned)
    except Exception:           # dnslib raises many kinds on malformed input
        return None
    for rr in record.auth:
        if rr.rtype == SOA_TYPE and isinstance(rr.rdata, SOA):
            return rr.rdata.times[0]
    return None

