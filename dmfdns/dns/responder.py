"""The pure DNS responder: query bytes in, response bytes out (docs/decisions.md §4.1).

``Responder.respond`` first looks in the answer cache (``answer_cache.py``), then tries the
hand-written lean path (``lean.py``) for the common TXT shape, whose answers it caches for
as long as they stay byte-identical; everything else takes the general path: a strict
parse (``query.py``), TSIG, UPDATE and transfers handed on, the decision
(``decision.py``) and its dnslib rendering (``render.py``). The transports only frame
bytes: they pass ``max_udp`` (None over TCP), the protocol name for the counters and the
client address for cookies. Nothing here reads a clock or raises on any input; every
behaviour, with its RFC, is listed in docs/dns-behaviour.md.
"""

from dataclasses import dataclass, replace

from . import client_options, cookies, edns, policy, query as wire, tsig
from . import update as update_wire
from .answer_cache import AnswerCache
from .counters import OTHER, DnsCounters
from .decision import Decision
from .lean import LeanPath
from .render import Reply, render

SERVFAIL = 2
AXFR_TYPE, IXFR_TYPE = 252, 251
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


class Responder:
    """Authoritative answers for ``zones`` from ``store`` (see the module docstring)."""

    def __init__(self, zones, store, settings: ResponderSettings = ResponderSettings(),
                 counters: DnsCounters | None = None, policies=(), on_error=None,
                 transfers=None, signers=None):
        self.store = store
        # Zone origin -> dns.signer.ZoneSigner for the zones signed online (DNSSEC).
        self.signers = dict(signers or {})
        self.counters = counters if counters is not None else DnsCounters()
        self.cache = None
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

    def resize_cache(self, entries: int, size: int) -> None:
        """Bound the answer cache anew (``node_dns.CacheSizer``: the zone grew or shrank);
        a reload keeps these bounds. Nothing changes when the cache is off."""
        if self.cache is None or not entries or not size:
            return
        self.cache.resize(entries, size)
        self.settings = replace(self.settings, cache_entries=entries,
                               cache_bytes=size)

    def _serve(self, zones, settings: ResponderSettings) -> None:
        origins = [zone.origin for zone in zones]
        if len(set(origins)) != len(origins):
            raise ValueError("two zones with the same origin")
        store = self.store
        self._decision = Decision(zones, store, settings, lambda: self.signers)
        self.zones = self._decision.zones
        self.settings = settings
        self._lean = LeanPath(zones, store, answer_ttl=settings.answer_ttl,
                              edns_payload=settings.edns_payload,
                              signers=lambda: self.signers,
                              counters=self.counters).answer
        if self.cache is not None:
            self.cache.close()      # its entries leave the counters with it
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
        cache = self.cache
        if cache is not None:
            key = query[2:]
            try:
                generation = self.store.generation()
            except Exception:       # the store cannot tell: answer without the cache
                generation = None
            entry = cache.lookup(key, generation, now, max_udp)
            if entry is not None:
                self.counters.cache_hits += 1
                body = entry[3]
                return query[:2] + body, entry[2], body[1] & 0x0F
            self.counters.cache_misses += 1
        lean = self._lean(query, now, max_udp)
        if lean is None:
            return None
        response, qtype, until_ms = lean
        if cache is not None and generation is not None:
            cache.store(key, response, generation, now, until_ms, max_udp, qtype)
        return response, qtype, response[3] & 0x0F

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
                reply = Reply(verdict.rcode)
            else:
                reply = self._decision.decide(parsed, now, client)
        except Exception:       # a store failure or a bug: SERVFAIL, reported, counted
            counters.count_error(proto)
            if self.on_error is not None:
                self.on_error(proto)
            reply = Reply(SERVFAIL)
        if verdict is not None and max_udp is not None:
            max_udp = max(512, max_udp - TSIG_ROOM)
        response, rcode, truncated = render(parsed, reply, max_udp,
                                             self.settings.edns_payload)
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
