"""The decision of the general (dnslib) path: what a parsed query is answered, from the
zones, the store and, for signed zones, the signers (every behaviour with its RFC:
docs/dns-behaviour.md). ``render`` turns the ``Reply`` into bytes; the responder
(``responder.py``) owns the fast path, the transports' side and errors."""

from dnslib import CLASS, RD, RR, SOA, TXT, DNSBuffer, DNSLabel

from ..proto import names
from ..proto import txt as txt_strings
from . import cookies, edns, query as wire, rrblob
from .dnssec import CDNSKEY, CDS, DNSKEY, NSEC, NXNAME, RRSIG
from .render import Reply
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
_EDNS_CO = 0x4000           # RFC 9824 section 5: Compact Answers OK, the bit after DO
_APEX_KEY_TYPES = (DNSKEY, CDS, CDNSKEY)


class Decision:
    """Answers for ``zones`` from ``store`` with ``settings`` (``ResponderSettings``);
    ``signers()`` gives ``{origin: signer.ZoneSigner}`` of the signed zones now."""

    def __init__(self, zones, store, settings, signers):
        self.store = store
        self.settings = settings
        self._signers = signers
        # Most specific zone first, so nested zones win (RFC 1034 section 4.3.2 step 2).
        self.zones = sorted(zones, key=lambda zone: len(zone.labels), reverse=True)
        self._static_types = {}
        for zone in zones:
            for name, rtype in zone.rrsets:
                self._static_types.setdefault((zone.origin, name), set()).add(rtype)
        self._above_apexes = above_apexes(zones)

    @property
    def signers(self) -> dict:
        return self._signers()

    def decide(self, q: wire.Query, now: float, client) -> Reply:
        """The ``Reply`` to the parsed query ``q`` (``client`` for its cookie)."""
        if q.opcode not in (QUERY, UPDATE):
            return Reply(NOTIMP)                    # RFC 1035 4.1.1; RFC 8906 s8 test 6
        if q.error is not None:
            return Reply(FORMERR)
        if q.opt is not None and q.opt.version != 0:
            return Reply(BADVERS)                   # RFC 6891 section 6.1.3
        if q.opcode == UPDATE:
            return Reply(NOTIMP if self.settings.update_enabled else REFUSED)
        options, valid_cookie = self._edns_options(q.opt, now, client)
        if options is None:
            return Reply(FORMERR)                   # RFC 7873 section 5.2.2
        if q.qname is None:
            # RFC 7873 section 5.4: no question, only a cookie: NOERROR with our cookie.
            cookie = any(option.code == edns.COOKIE for option in options)
            return Reply(NOERROR if cookie else FORMERR, options=options)
        reply = self._answer(q, now)
        reply.options[:0] = options
        reply.valid_cookie = valid_cookie
        return reply

    def _answer(self, q: wire.Query, now: float) -> Reply:
        if q.qtype == OPT_TYPE:
            return Reply(FORMERR)                   # RFC 6891 section 6.1.1
        if q.qtype in (AXFR_TYPE, IXFR_TYPE):
            return Reply(REFUSED, options=[edns.extended_error(edns.EDE_PROHIBITED)])
        if q.qclass == CH:
            return self._chaos(q)
        if q.qclass not in (IN, ANY_CLASS):
            return Reply(REFUSED)
        labels = tuple(label.lower() for label in q.qname)
        zone = self._zone_for(labels)
        if zone is None:                             # never a referral upward, never NXDOMAIN
            return Reply(REFUSED,
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

    def _dnssec_types(self, q, zone, name, signer, now) -> Reply:
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
            return Reply(NOERROR, answer=nsec)
        records = []
        for rtype in sorted(types - {NXNAME}):
            records += self._rrsets(zone, name, owner, rtype, now)
        signed = signer.sign_section(records, now) + nsec
        return Reply(NOERROR, answer=[rr for rr in signed if rr.rtype == RRSIG])

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

    def _in_zone(self, q, zone, name, now) -> Reply:
        owner = DNSLabel(q.qname)
        answer = self._rrsets(zone, name, owner, q.qtype, now) if name is not None else []
        if answer:
            additional = []
            if q.qtype == NS_TYPE and name == zone.origin:
                additional = zone.glue(zone.rrset(name, NS_TYPE))
            return Reply(NOERROR, answer=answer, additional=additional)
        apex = DNSLabel(q.qname[len(q.qname) - len(zone.labels):])
        negative = self._soa(zone, apex, zone.negative_ttl)       # RFC 2308 sections 3, 5
        rcode = NOERROR if self._exists(zone, name, now) else NXDOMAIN
        return Reply(rcode, authority=[negative])

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

    def _chaos(self, q) -> Reply:
        """CH TXT identity and version (RFC 4892); anything else in CH is REFUSED."""
        name = b".".join(q.qname).lower()
        if name in _CHAOS_IDENTITY:
            value = self.settings.server_id
        elif name in _CHAOS_VERSION:
            value = self.settings.version
        else:
            return Reply(REFUSED)
        if value is None:
            return Reply(REFUSED)
        answer = []
        if q.qtype in (TXT_TYPE, ANY_TYPE):
            strings = txt_strings.split(value.encode("utf-8"))
            answer = [RR(DNSLabel(q.qname), TXT_TYPE, CH, 0, TXT(strings))]
        return Reply(NOERROR, aa=True, answer=answer)

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

