"""The pure DNS responder: query bytes in, response bytes out (docs/decisions.md §4.1).

``Responder.respond`` first looks in the answer cache (``answer_cache.py``), then tries the
hand-written lean path (``lean.py``) for the common TXT shape, whose answers it caches for
as long as they stay byte-identical; everything else is decided here and rendered with
dnslib. The transports only
frame bytes: they pass ``max_udp`` (None over TCP), the protocol name for the counters and
the client address for cookies. Nothing here reads a clock or raises on any input; every
behaviour, with its RFC, is listed in docs/dns-behaviour.md.
"""

from dataclasses import dataclass, field

from dnslib import (CLASS, RD, RR, SOA, TXT, DNSBuffer, DNSHeader, DNSLabel,
                    DNSQuestion, DNSRecord)

from ..proto import names
from ..proto import txt as txt_strings
from . import client_options, cookies, edns, policy, query as wire, rrblob, tsig
from . import update as update_wire
from .answer_cache import AnswerCache
from .counters import OTHER, DnsCounters
from .dnssec import CDNSKEY, CDS, DNSKEY, NSEC, NXNAME, RRSIG
from .lean import LeanPath
from .zone import above_apexes

QUERY, NOTIFY, UPDATE = 0, 4, 5
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16                     # extended rcode, RFC 6891 section 9
IN, CH, ANY_CLASS = CLASS.IN, CLASS.CH, 255
TXT_TYPE, ANY_TYPE, NS_TYPE, SOA_TYPE, CNAME_TYPE = 16, 255, 2, 6, 5
HINFO_TYPE, OPT_TYPE, AXFR_TYPE, IXFR_TYPE = 13, 41, 252, 251
_HINFO_RFC8482 = b"\x07RFC8482\x00"          # RFC 8482 section 4.2: CPU "RFC8482", OS ""
_CHAOS_IDENTITY = (b"id.server", b"hostname.bind")    # RFC 4892
_CHAOS_VERSION = (b"version.server", b"version.bind")
_FLAG_QR, _FLAG_AA, _FLAG_TC, _FLAG_RD, _FLAG_CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0010
_EDNS_CO = 0x4000           # RFC 9824 section 5: Compact Answers OK, the bit after DO
_APEX_KEY_TYPES = (DNSKEY, CDS, CDNSKEY)
TSIG_ROOM = 200         # UDP bytes kept free for the TSIG RR of a signed answer


@dataclass(frozen=True)
class ResponderSettings:
    """What the responder needs from the configuration; validated on construction."""

    answer_ttl: int = 60                 # cap on served TXT TTLs (seconds)
    edns_payload: int = 1232             # our advertised UDP payload (DNS Flag Day 2020)
    nsid: bytes | None = None            # RFC 5001 identifier, None to not answer NSID
    server_id: str | None = None         # CH TXT id.server / hostname.bind; None refuses
    version: str | None = None           # CH TXT version.bind / version.server; None refuses
    cookie_secret: bytes | None = None   # 16-byte RFC 9018 secret; None disables cookies
    update_enabled: bool = False         # DNS UPDATE (RFC 2136); REFUSED while False
    cache_entries: int = 100_000         # answer cache bound in entries; 0 turns it off
    cache_bytes: int = 64 * 2**20        # answer cache bound in bytes (about its memory)

    def __post_init__(self):
        if self.cache_entries < 0 or self.cache_bytes < 0:
            raise ValueError("cache_entries and cache_bytes must be >= 0")
        if not 0 <= self.answer_ttl <= 2**31 - 1:
            raise ValueError("answer_ttl must be 0..2147483647 seconds")
        if not 512 <= self.edns_payload <= 65535:
            raise ValueError("edns_payload must be 512..65535 bytes")
        if self.cookie_secret is not None and len(self.cookie_secret) != cookies.SECRET:
            raise ValueError("cookie_secret must be exactly 16 bytes (SipHash-2-4 key)")
        if self.nsid is not None and not 0 < len(self.nsid) <= 512:
            raise ValueError("nsid must be 1..512 bytes")
        for text in (self.server_id, self.version):
            if text is not None and len(text.encode("utf-8")) > 4096:
                raise ValueError("server_id and version must be at most 4096 bytes")


@dataclass
class _Reply:
    """The decision for one query, before rendering."""

    rcode: int
    aa: bool = False
    answer: list = field(default_factory=list)
    authority: list = field(default_factory=list)
    additional: list = field(default_factory=list)
    options: list = field(default_factory=list)       # EDNS options for our OPT
    valid_cookie: bool = False                         # the query's server cookie is ours


class Responder:
    """Authoritative answers for ``zones`` from ``store`` (see the module docstring)."""

    def __init__(self, zones, store, settings: ResponderSettings = ResponderSettings(),
                 counters: DnsCounters | None = None, policies=(), on_error=None,
                 transfers=None, signers=None):
        self.store = store
        # Zone origin -> dns.signer.ZoneSigner for the zones signed online (DNSSEC).
        self.signers = dict(signers or {})
        self.counters = counters if counters is not None else DnsCounters()
        self._serve(zones, settings)
        self._policies = tuple(policies)
        self.transfers = transfers     # xfr.Transfers for AXFR/IXFR; None refuses them
        # Called (with the protocol name) inside the handler of a decision that raised, so
        # a logger can take the traceback from there (the transports' rate-limited log).
        self.on_error = on_error
        # DNS UPDATE (RFC 2136): ``update(message, now=, proto=, client=) -> bytes | None``
        # answers every UPDATE when set (``dmfdns.dns.update_handler``); None: REFUSED.
        self.update = None

    def reconfigure(self, zones, settings: ResponderSettings, signers=None) -> None:
        """Serve ``zones`` with ``settings`` (and ``signers``, when given) from the next
        query on (a reload): the fast path is rebuilt and the answer cache emptied, since
        cached answers carry the old SOA and settings. ValueError (two zones with one
        origin) changes nothing."""
        previous = self.signers
        if signers is not None:
            self.signers = dict(signers)
        try:
            self._serve(zones, settings)
        except ValueError:
            self.signers = previous
            raise

    def set_signer(self, origin: str, signer) -> None:
        """Sign the zone ``origin`` (already signed) with ``signer`` from the next query on
        (a key rollover step). The answer cache is emptied: it holds fast-path answers
        with the RRSIGs stored at write time, made by the keys signing until now."""
        if origin not in self.signers:
            raise ValueError(f"{origin} is not a signed zone")
        self.signers[origin] = signer
        if self.cache is not None:
            self.cache.clear()

    def _serve(self, zones, settings: ResponderSettings) -> None:
        origins = [zone.origin for zone in zones]
        if len(set(origins)) != len(origins):
            raise ValueError("two zones with the same origin")
        store = self.store
        # Most specific zone first, so nested zones win (RFC 1034 section 4.3.2 step 2).
        self.zones = sorted(zones, key=lambda zone: len(zone.labels), reverse=True)
        self.settings = settings
        self._lean = LeanPath(zones, store, answer_ttl=settings.answer_ttl,
                              edns_payload=settings.edns_payload,
                              signers=lambda: self.signers,
                              counters=self.counters).answer
        self._static_types = {}
        for zone in zones:
            for name, rtype in zone.rrsets:
                self._static_types.setdefault((zone.origin, name), set()).add(rtype)
        self._above_apexes = above_apexes(zones)
        self.cache = None
        if settings.cache_entries and settings.cache_bytes:
            self.cache = AnswerCache(settings.cache_entries, settings.cache_bytes,
                                     self.counters,
                                     getattr(store, "touched_between", None))

    def respond(self, query: bytes, *, now: float, max_udp: int | None, proto: str = "udp",
                client=None) -> bytes | None:
        """The response to ``query``, or None when nothing must be sent (runts, QR=1, or a
        policy chose silence)."""
        if query.__class__ is not bytes:
            query = bytes(query)            # a bytearray or a memoryview: hashable bytes
        valid_cookie = False
        # Options to split off only if there is one additional record and it is not an
        # empty OPT at the end (the common plain-EDNS query skips the parse).
        options = (client_options.split(query) if query[11:12] == b"\x01"
                   and (query[-11:-8] != b"\x00\x00\x29" or query[-2:] != b"\x00\x00")
                   else None)
        if options is None:
            fast = self._fast(query, now, max_udp)
            if fast is not None:
                response = fast[0]
        else:
            fast = self._fast(options.bare, now, max_udp)
            if fast is not None:
                response, valid_cookie = self._add_options(query[:2] + fast[0][2:], options,
                                                           now, client)
                if max_udp is not None and len(response) > min(max_udp, options.payload):
                    fast = None         # the dnslib path truncates it
        if fast is not None:
            self.counters.count_answer(proto, fast[1], fast[2], len(response))
            if response[2] & 0x02:          # TC: a large RRset asked over UDP
                self.counters.count_truncated(proto)
        else:
            response, valid_cookie = self._respond_dnslib(query, now, max_udp, proto, client)
        if self._policies and response is not None:
            request = policy.Request(query, response, client, proto, now, valid_cookie)
            for stage in self._policies:
                response = stage.decide(request)
                if response is None:
                    break
                request.response = response
        return response

    def _fast(self, query: bytes, now: float, max_udp):
        """``(response, qtype, rcode)`` from the answer cache or the lean path, or None."""
        cache, counters = self.cache, self.counters
        if cache is not None:
            key = query[2:]
            try:
                generation = self.store.generation()
            except Exception:       # the store cannot tell: answer without the cache
                generation = None
            entry = cache.lookup(key, generation, now, max_udp)
            if entry is not None:
                counters.cache_hits += 1
                return query[:2] + entry[5], entry[3], entry[4]
            counters.cache_misses += 1
        lean = self._lean(query, now, max_udp)
        if lean is None:
            return None
        response, qtype, until_ms = lean
        rcode = response[3] & 0xF
        if cache is not None and generation is not None:
            cache.store(key, response[2:], generation=generation, built=now,
                        until_ms=until_ms, max_udp=max_udp, qtype=qtype, rcode=rcode)
        return response, qtype, rcode

    def _add_options(self, response: bytes, options, now: float, client):
        """``(response with our NSID and COOKIE options, whether the query's server cookie
        was valid)``, in the order the dnslib path writes them."""
        out, valid = b"", False
        settings = self.settings
        if options.nsid and settings.nsid is not None:
            out += client_options.option(edns.NSID, settings.nsid)
        if options.cookie is not None and settings.cookie_secret is not None:
            data, valid = cookies.answer(settings.cookie_secret, options.cookie,
                                         cookies.client_address(client), now)
            out += client_options.option(edns.COOKIE, data)
        return client_options.add(response, out), valid

    def respond_dnslib(self, query: bytes, *, now: float, max_udp: int | None,
                       proto: str = "udp", client=None) -> bytes | None:
        """The general path: strict parse, decision, dnslib rendering, truncation."""
        return self._respond_dnslib(query, now, max_udp, proto, client)[0]

    def _respond_dnslib(self, query, now, max_udp, proto, client):
        """``(response or None, whether the query carried a valid server cookie)``."""
        if self.update is not None and update_wire.is_update(query):
            return self._respond_update(query, now, proto, client), False
        parsed = wire.parse(query)
        counters = self.counters
        if parsed is None or parsed.qr:
            counters.count_dropped("runt" if parsed is None else "response")
            return None, False
        counters.count_query(proto, parsed.qtype if parsed.qname is not None else OTHER)
        if (self.transfers is not None and max_udp is not None
                and parsed.qtype in (AXFR_TYPE, IXFR_TYPE)):
            return self._transfer(query, now, proto, client), False
        verdict = self._tsig(query, parsed, now)
        try:
            if verdict is not None and verdict.status != "ok":
                reply = _Reply(verdict.rcode)
            else:
                reply = self._decide(parsed, now, client)
        except Exception:       # a store failure or a bug: SERVFAIL, reported, counted
            counters.count_error(proto)
            if self.on_error is not None:
                self.on_error(proto)
            reply = _Reply(SERVFAIL)
        if verdict is not None and max_udp is not None:
            max_udp = max(512, max_udp - TSIG_ROOM)
        response, rcode, truncated = self._render(parsed, reply, max_udp)
        if verdict is not None:
            response = tsig.finish(response, verdict, now=now)
        if truncated:
            counters.count_truncated(proto)
        counters.count_response(proto, rcode, len(response))
        return response, reply.valid_cookie

    def _respond_update(self, query: bytes, now: float, proto: str, client) -> bytes | None:
        counters = self.counters
        counters.count_query(proto, OTHER)
        try:
            response = self.update(query, now=now, proto=proto, client=client)
        except Exception:       # a bug: SERVFAIL, reported, counted
            counters.count_error(proto)
            if self.on_error is not None:
                self.on_error(proto)
            response = update_wire.response(query, SERVFAIL)
        if response is not None:
            counters.count_response(proto, response[3] & 0xF, len(response))
        return response

    def _tsig(self, query: bytes, parsed: wire.Query, now: float):
        """The TSIG verdict of a signed query when keys are configured (the secondaries
        sign their SOA queries with the transfer key, RFC 8945 section 5.3: the answer
        must be signed); None for an unsigned query or when no keys are configured."""
        if self.transfers is None or not parsed.arcount or parsed.error is not None:
            return None
        verdict = tsig.verify(query, self.transfers.key, now=now)
        return None if verdict.status == "unsigned" else verdict

    def _transfer(self, query, now, proto, client) -> bytes | None:
        """AXFR/IXFR over UDP, one message: the SOA for IXFR, AXFR refused. Over TCP the
        listener streams them (``xfr_pump``)."""
        transfer = self.transfers.start(query, now=now, client=client, tcp=False)
        if transfer is None:
            return None
        response = transfer.next_message(now)
        transfer.close()
        if response:
            self.counters.count_response(proto, response[3] & 0xF, len(response))
        return response or None

    # The decision.

    def _decide(self, q: wire.Query, now: float, client) -> _Reply:
        if q.opcode not in (QUERY, UPDATE):
            return _Reply(NOTIMP)                    # RFC 1035 4.1.1; RFC 8906 s8 test 6
        if q.error is not None:
            return _Reply(FORMERR)
        if q.opt is not None and q.opt.version != 0:
            return _Reply(BADVERS)                   # RFC 6891 section 6.1.3
        if q.opcode == UPDATE:
            return _Reply(NOTIMP if self.settings.update_enabled else REFUSED)
        options, valid_cookie = self._edns_options(q.opt, now, client)
        if options is None:
            return _Reply(FORMERR)                   # RFC 7873 section 5.2.2
        if q.qname is None:
            # RFC 7873 section 5.4: no question, only a cookie: NOERROR with our cookie.
            cookie = any(option.code == edns.COOKIE for option in options)
            return _Reply(NOERROR if cookie else FORMERR, options=options)
        reply = self._answer(q, now)
        reply.options[:0] = options
        reply.valid_cookie = valid_cookie
        return reply

    def _answer(self, q: wire.Query, now: float) -> _Reply:
        if q.qtype == OPT_TYPE:
            return _Reply(FORMERR)                   # RFC 6891 section 6.1.1
        if q.qtype in (AXFR_TYPE, IXFR_TYPE):
            return _Reply(REFUSED, options=[edns.extended_error(edns.EDE_PROHIBITED)])
        if q.qclass == CH:
            return self._chaos(q)
        if q.qclass not in (IN, ANY_CLASS):
            return _Reply(REFUSED)
        labels = tuple(label.lower() for label in q.qname)
        zone = self._zone_for(labels)
        if zone is None:                             # never a referral upward, never NXDOMAIN
            return _Reply(REFUSED,
                          options=[edns.extended_error(edns.EDE_NOT_AUTHORITATIVE)])
        name = _name(labels)
        signer = self.signers.get(zone.origin)
        if not (signer is not None and q.opt is not None and q.opt.do and q.qclass == IN):
            reply = self._in_zone(q, zone, name, now)
        elif q.qtype in (NSEC, RRSIG):
            reply = self._dnssec_types(q, zone, name, signer, now)
        else:
            reply = self._in_zone(q, zone, name, now)
            self._sign(reply, q, zone, name, signer, now)
        reply.aa = q.qclass == IN                    # RFC 6895 section 3.2 for QCLASS *
        return reply

    def _dnssec_types(self, q, zone, name, signer, now) -> _Reply:
        """A DO query for NSEC or RRSIG in a signed zone. Online signing makes an NSEC
        (and RRSIGs) exist at every name asked, so these are answered, never denied: a
        NODATA proof for them would carry a bitmap naming the very type it denies (RFC
        4034 section 4.1.2). NSEC: the compact NSEC of the name (RFC 9824 section 3) and
        its RRSIGs. RRSIG: the RRSIGs over every RRset at the name and over that NSEC
        (RFC 4035 section 3.1.1; an RRSIG RRset is never signed itself)."""
        owner = DNSLabel(q.qname)
        exists = self._exists(zone, name, now)
        types = self._types_at(zone, name, now) if exists else {NXNAME}
        nsec = signer.denial(owner, types, zone.negative_ttl, now)
        if q.qtype == NSEC:
            return _Reply(NOERROR, answer=nsec)
        records = []
        for rtype in sorted(types - {NXNAME}):
            records += self._rrsets(zone, name, owner, rtype, now)
        signed = signer.sign_section(records, now) + nsec
        return _Reply(NOERROR, answer=[rr for rr in signed if rr.rtype == RRSIG])

    def _sign(self, reply, q, zone, name, signer, now) -> None:
        """Add the RRSIGs to an answer from a signed zone, and turn a negative answer into
        RFC 9824 compact denial: an NSEC at the query name whose bitmap holds the name's
        types (NODATA), nothing (an empty non-terminal) or NXNAME (no such name); rcode
        NOERROR, or NXDOMAIN when the query set CO (RFC 9824 sections 3, 5)."""
        if reply.answer:
            reply.answer = signer.sign_section(reply.answer, now)
            reply.additional = signer.sign_section(reply.additional, now)
            return
        if reply.rcode not in (NOERROR, NXDOMAIN):
            return
        if reply.rcode == NXDOMAIN:
            types = {NXNAME}
            reply.rcode = NXDOMAIN if q.opt.flags & _EDNS_CO else NOERROR
        else:
            types = self._types_at(zone, name, now)
        ttl = reply.authority[0].ttl                  # min(SOA TTL, MINIMUM): RFC 9077
        reply.authority = (signer.sign_section(reply.authority, now)
                           + signer.denial(DNSLabel(q.qname), types, ttl, now))

    def _types_at(self, zone, name, now) -> set:
        """The types at an existing name, for a NODATA bitmap (RFC 4034 section 4.1.2)."""
        types = set(self._static_types.get((zone.origin, name), ()))
        if name == zone.origin:
            types.update(_APEX_KEY_TYPES)
        if self._live(name, now):
            types.add(TXT_TYPE)
        return types

    def _zone_for(self, labels):
        for zone in self.zones:
            depth = len(zone.labels)
            if len(labels) >= depth and labels[len(labels) - depth:] == zone.labels:
                return zone
        return None

    def _in_zone(self, q, zone, name, now) -> _Reply:
        owner = DNSLabel(q.qname)
        answer = self._rrsets(zone, name, owner, q.qtype, now) if name is not None else []
        if answer:
            additional = []
            if q.qtype == NS_TYPE and name == zone.origin:
                additional = zone.glue(zone.rrset(name, NS_TYPE))
            return _Reply(NOERROR, answer=answer, additional=additional)
        apex = DNSLabel(q.qname[len(q.qname) - len(zone.labels):])
        negative = self._soa(zone, apex, zone.negative_ttl)       # RFC 2308 sections 3, 5
        rcode = NOERROR if self._exists(zone, name, now) else NXDOMAIN
        return _Reply(rcode, authority=[negative])

    def _exists(self, zone, name, now) -> bool:
        """The name owns data or is an empty non-terminal (RFC 8020, RFC 9156)."""
        if name is None:
            return False
        return (zone.has_name(name) or zone.has_descendants(name)
                or name in self._above_apexes or bool(self._live(name, now))
                or self.store.has_descendants(name, now))

    def _rrsets(self, zone, name, owner, qtype, now) -> list:
        if qtype == ANY_TYPE:                         # RFC 8482: one RRset, never all
            found = self._txt(zone, name, owner, now)
            if found or not zone.has_name(name):
                return found
            return [RR(owner, HINFO_TYPE, IN, self.settings.answer_ttl, RD(_HINFO_RFC8482))]
        cname = zone.rrset(name, CNAME_TYPE)
        if cname and qtype != CNAME_TYPE:
            return [_at(owner, rr) for rr in cname]
        if qtype == TXT_TYPE:
            return self._txt(zone, name, owner, now)
        if qtype == SOA_TYPE and name == zone.origin:
            return [self._soa(zone, owner, zone.soa.ttl)]
        if qtype in _APEX_KEY_TYPES and name == zone.origin and zone.origin in self.signers:
            signer = self.signers[zone.origin]
            return [RR(owner, qtype, IN, zone.soa.ttl, RD(rdata))
                    for rdata in signer.apex_rrset(qtype)]
        return [_at(owner, rr) for rr in zone.rrset(name, qtype)]

    def _txt(self, zone, name, owner, now) -> list:
        """Static TXT plus the store's live values as one RRset with one TTL (RFC 2181
        section 5.2): min(configured TTL, every value's remaining lifetime)."""
        static = zone.rrset(name, TXT_TYPE)
        live = self._live(name, now)
        if not live:
            return [_at(owner, rr) for rr in static]
        now_ms = round(now * 1000)
        ttl_ms = min(self.settings.answer_ttl * 1000,
                     min(expiry_ms - now_ms for expiry_ms, _ in live))
        ttl = min([ttl_ms // 1000] + [rr.ttl for rr in static])
        rrset = ([RR(owner, TXT_TYPE, IN, ttl, rr.rdata) for rr in static]
                 + [RR(owner, TXT_TYPE, IN, ttl, _txt_rdata(rdata)) for _, rdata in live])
        # The TTL an RRSIG carries (dns/signer.py): the one served at full lifetime.
        original = min([self.settings.answer_ttl] + [rr.ttl for rr in static])
        for rr in rrset:
            rr.original_ttl = original
        return rrset

    def _live(self, name, now) -> list:
        blob = self.store.packed_txt(name)
        return rrblob.live(blob, round(now * 1000)) if blob else []

    def _soa(self, zone, owner, ttl) -> RR:
        """The apex SOA with serial = file serial + store generation (mod 2^32), so it
        grows whenever the content changes (RFC 1982 serial arithmetic)."""
        data = zone.soa.rdata
        serial = (data.times[0] + self.store.generation()) % 2**32
        return RR(owner, SOA_TYPE, IN, ttl, SOA(data.mname, data.rname,
                                                (serial,) + tuple(data.times[1:])))

    def _chaos(self, q) -> _Reply:
        """CH TXT identity and version (RFC 4892); anything else in CH is REFUSED."""
        name = b".".join(q.qname).lower()
        if name in _CHAOS_IDENTITY:
            value = self.settings.server_id
        elif name in _CHAOS_VERSION:
            value = self.settings.version
        else:
            return _Reply(REFUSED)
        if value is None:
            return _Reply(REFUSED)
        answer = []
        if q.qtype in (TXT_TYPE, ANY_TYPE):
            strings = txt_strings.split(value.encode("utf-8"))
            answer = [RR(DNSLabel(q.qname), TXT_TYPE, CH, 0, TXT(strings))]
        return _Reply(NOERROR, aa=True, answer=answer)

    def _edns_options(self, opt, now, client):
        """``(our response options (NSID, COOKIE) or None when a cookie is malformed,
        whether the query's server cookie is valid)``."""
        if opt is None:
            return [], False
        options, valid = [], False
        if self.settings.nsid is not None and opt.option(edns.NSID) is not None:
            options.append(edns.option(edns.NSID, self.settings.nsid))
        cookie = opt.option(edns.COOKIE)
        if cookie is not None:
            if not cookies.well_formed(cookie):
                return None, False
            if self.settings.cookie_secret is not None:
                data, valid = cookies.answer(self.settings.cookie_secret, cookie,
                                             cookies.client_address(client), now)
                options.append(edns.option(edns.COOKIE, data))
        return options, valid

    # Rendering.

    def _render(self, q: wire.Query, reply: _Reply, max_udp):
        """Pack ``reply``; returns (bytes, rcode, truncated). Over the size limit: TC with
        the question and OPT only (RFC 2181 section 9: no partial RRsets); over TCP, where
        65535 bytes is the hard limit, SERVFAIL."""
        limit = edns.size_limit(q.opt, max_udp)
        response = self._pack(q, reply, full=True)
        if len(response) <= limit:
            return response, reply.rcode, False
        if max_udp is None:
            failure = _Reply(SERVFAIL, options=reply.options)
            return self._pack(q, failure, full=True), SERVFAIL, False
        return self._pack(q, reply, full=False), reply.rcode, True

    def _pack(self, q, reply, *, full) -> bytes:
        flags = (_FLAG_QR | (q.flags & 0x7800) | (q.flags & (_FLAG_RD | _FLAG_CD))
                 | (_FLAG_AA if reply.aa else 0) | (reply.rcode & 0xF)
                 | (0 if full else _FLAG_TC))
        record = DNSRecord(DNSHeader(id=q.id, bitmap=flags))
        if q.qname is not None and q.qdcount == 1:
            record.add_question(DNSQuestion(DNSLabel(q.qname), q.qtype, q.qclass))
        if full:
            record.rr, record.auth = list(reply.answer), list(reply.authority)
            record.ar = list(reply.additional)
        if q.opt_seen:
            options = [] if reply.rcode in (FORMERR, BADVERS) else reply.options
            do = q.opt is not None and q.opt.do
            record.ar.append(edns.response_opt(self.settings.edns_payload, do=do,
                                               ext_rcode=reply.rcode >> 4, options=options))
        try:
            return bytes(record.pack())
        except Exception:       # e.g. a name dnslib refuses to encode: header-only SERVFAIL
            header = DNSHeader(id=q.id, bitmap=(flags & ~0x040F) | SERVFAIL)
            return bytes(DNSRecord(header).pack())


def servfail_for(query: bytes) -> bytes | None:
    """A bare SERVFAIL for ``query`` when building its response failed (a bug): the ID,
    opcode and RD copied, the question echoed when it can be walked; None for what gets
    no answer at all (shorter than a header, or a response)."""
    if len(query) < 12 or query[2] & 0x80:
        return None
    head = query[:2] + bytes((0x80 | (query[2] & 0x79), SERVFAIL))
    end = wire.question_end(query)
    if end is None:
        return head + bytes(8)
    return head + b"\x00\x01" + bytes(6) + query[12:end]


def _name(labels) -> str | None:
    """The canonical text of wire labels, or None if no stored name could match."""
    if any(b"." in label for label in labels):
        return None
    try:
        text = b".".join(labels).decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if names.canonical(text) == text else None


def _at(owner: DNSLabel, rr: RR) -> RR:
    """``rr`` with the query's spelling of its owner (0x20), so it compresses to the
    question name."""
    return RR(owner, rr.rtype, rr.rclass, rr.ttl, rr.rdata)


def _txt_rdata(rdata) -> RD:
    """dnslib TXT from blob RDATA (bytes or a memoryview into the map); a malformed entry
    is sent as it is stored, which is also what the lean path does."""
    rdata = bytes(rdata)
    try:
        return TXT.parse(DNSBuffer(rdata), len(rdata))
    except Exception:
        return RD(rdata)

