"""Response-rate limiting (RRL), in the manner of Knot's ``mod-rrl`` and BIND's
``rate-limit``: a policy of the responder's policy stage (``policy.py``).

A spoofed-source flood makes a DNS server reflect and amplify traffic at a victim. RRL
bounds what one client network gets: UDP responses are counted in token buckets keyed by

* the client prefix (``ipv4_prefix`` / ``ipv6_prefix`` bits: /24 and /56 by default, so
  one host cannot dodge by changing addresses within its network),
* the answer class: ``positive`` (records), ``nodata``, ``nxdomain``, ``error`` (any other
  rcode),
* the name for ``positive`` and ``nodata`` (the question, lower-cased); NXDOMAIN and errors
  share one bucket per prefix (a random-subdomain flood is one class, as in Knot).

Each bucket refills at ``rate`` responses per second up to ``burst``. Past it a response is
not sent, except every ``slip``-th one, which goes out *slipped*: truncated (TC=1, header and
question only) so an honest resolver behind a spoofed address retries over TCP, where the
source cannot be forged (RFC 7766). A slipped response to a query carrying a client cookie
is BADCOOKIE with a fresh server cookie instead (RFC 7873 section 5.2.3 allows it "based on
server policy, including rate limiting"): the resolver's retry then carries a valid server
cookie, which proves its address, and queries with a valid server cookie are never limited
(nor is TCP). ``slip = 0`` drops every limited response, ``1`` slips every one.

The table holds at most ``table_size`` buckets; past that the oldest-created is forgotten
(it comes back full, which only errs toward answering). Counters: ``DnsCounters.rrl``
(``slipped``, ``dropped``); ``report`` (optional) receives one line per ``log_period``
naming one limited prefix and the counts since the last line (docs/decisions.md §8.2: a
per-drop log line would itself be a flood).
"""

import socket
import struct
from dataclasses import dataclass

from . import client_options, cookies, edns
from .query import question_end

BADCOOKIE = 23                      # RFC 7873 section 8, an extended rcode
_POSITIVE, _NODATA, _NXDOMAIN, _ERROR = "positive", "nodata", "nxdomain", "error"


@dataclass(frozen=True)
class RrlSettings:
    rate: float = 0.0               # responses per second per bucket; 0 = RRL off
    burst: int = 0                  # bucket depth; 0 = the same as rate (one second's worth)
    slip: int = 2                   # every slip-th limited response goes out truncated
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    table_size: int = 100_000
    log_period: float = 30.0        # seconds between two log lines
    edns_payload: int = 1232        # our OPT's payload in a slipped response

    def __post_init__(self):
        if self.rate < 0 or self.burst < 0 or self.slip < 0 or self.table_size < 1:
            raise ValueError("RRL rate, burst and slip must be >= 0, table_size >= 1")
        if not 0 <= self.ipv4_prefix <= 32 or not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("RRL prefixes: IPv4 0..32, IPv6 0..128 bits")

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class ResponseRateLimiter:
    """The RRL policy: ``decide(request)`` passes, slips or drops the response."""

    def __init__(self, settings: RrlSettings, counters, *, cookie_secret: bytes | None = None,
                 report=None):
        self.settings = settings
        self._rate = settings.rate
        self._burst = float(settings.burst or max(settings.rate, 1))
        self._counters = counters
        self._secret = cookie_secret
        self._report = report
        self._buckets = {}          # (prefix, class, name) -> [tokens, last, limited]
        self._prefixes = {}         # client address string -> prefix bytes (bounded)
        self._next_report = None
        self._truncated = {}        # (query after its ID, response flags) -> slip after ID
        self._since = {"slipped": 0, "dropped": 0}

    def decide(self, request) -> bytes | None:
        response = request.response
        if request.proto != "udp" or request.valid_cookie:
            return response
        now = request.now
        prefix = self._prefixes.get(request.client)
        if prefix is None:
            prefix = self._prefix(request.client)
        rcode = response[3] & 0x0F
        if rcode == 3:
            key = (prefix, _NXDOMAIN, b"")
        elif rcode:
            key = (prefix, _ERROR, b"")
        else:
            # The question name as asked, lower-cased (a zero byte inside a label only
            # shortens it: the key stays the same for the same question).
            name = response[12:response.find(0, 12)].lower()
            key = (prefix, _POSITIVE if response[6:8] != b"\x00\x00" else _NODATA, name)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room()
            self._buckets[key] = [self._burst - 1, now, 0]
            return response
        elapsed = now - bucket[1]
        tokens = bucket[0] + elapsed * self._rate if elapsed > 0 else bucket[0]
        if tokens > self._burst:
            tokens = self._burst
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return response
        bucket[0] = tokens
        bucket[2] += 1
        slip = self.settings.slip
        if slip and bucket[2] % slip == 0:
            return self._act("slipped", key, now, self._slipped(request))
        return self._act("dropped", key, now, None)

    def _act(self, action: str, key, now: float, response):
        self._counters.count_rrl(action)
        self._since[action] += 1
        if self._report is not None and (self._next_report is None or now >= self._next_report):
            self._next_report = now + self.settings.log_period
            self._report(f"RRL limiting {_prefix_text(key[0], self.settings)} ({key[1]} answers): "
                         f"{self._since['slipped']} slipped, {self._since['dropped']} "
                         f"dropped since the last report")
            self._since = {"slipped": 0, "dropped": 0}
        return response

    def _make_room(self) -> None:
        buckets = self._buckets
        if len(buckets) >= self.settings.table_size:
            del buckets[next(iter(buckets))]

    def _prefix(self, client) -> bytes:
        """The bucket prefix of a client address (remembered: a bounded map)."""
        if len(self._prefixes) >= self.settings.table_size:
            self._prefixes.clear()
        prefix = self._prefixes[client] = self._network(cookies.client_address(client))
        return prefix

    def _network(self, packed: bytes) -> bytes:
        bits = self.settings.ipv4_prefix if len(packed) == 4 else self.settings.ipv6_prefix
        whole, rest = divmod(bits, 8)
        prefix = packed[:whole]
        if rest and whole < len(packed):
            prefix += bytes((packed[whole] & (0xFF << (8 - rest)) & 0xFF,))
        return bytes((len(packed),)) + prefix

    def _slipped(self, request) -> bytes | None:
        """The truncated (or BADCOOKIE) stand-in for the limited response. A flood repeats
        one query: its truncated form is kept (without the ID) in a small map."""
        query, response = request.query, request.response
        memo = (query[2:], response[2:4])
        truncated = self._truncated.get(memo)
        if truncated is not None:
            return query[:2] + truncated
        slipped = self._build_slip(request)
        if slipped is not None and slipped[3] & 0x0F != BADCOOKIE & 0x0F:
            if len(self._truncated) >= 1024:
                self._truncated.clear()
            self._truncated[memo] = slipped[2:]
        return slipped

    def _build_slip(self, request) -> bytes | None:
        query, response = request.query, request.response
        end = question_end(response)
        if end is None:
            return None
        split = client_options.split(query) if self._secret is not None else None
        if split is not None and split.cookie is not None:
            client_cookie = split.cookie[:cookies.CLIENT_COOKIE]
            cookie = client_cookie + cookies.server_cookie(
                self._secret, client_cookie, cookies.client_address(request.client),
                request.now)
            head = response[:2] + bytes((response[2] & 0xF9, (response[3] & 0xF0)
                                         | (BADCOOKIE & 0xF)))
            return (head + b"\x00\x01\x00\x00\x00\x00\x00\x01" + response[12:end]
                    + self._opt(BADCOOKIE >> 4, client_options.option(edns.COOKIE, cookie)))
        head = response[:2] + bytes((response[2] | 0x02, response[3]))      # TC=1
        has_opt = response[10:12] != b"\x00\x00"
        return (head + b"\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if has_opt else b"\x00\x00")
                + response[12:end] + (self._opt(0, b"") if has_opt else b""))

    def _opt(self, ext_rcode: int, options: bytes) -> bytes:
        return (b"\x00\x00\x29" + struct.pack(">HBBHH", self.settings.edns_payload, ext_rcode,
                                              0, 0, len(options)) + options)


def _prefix_text(prefix: bytes, settings: RrlSettings) -> str:
    if prefix[0] not in (4, 16):
        return "an unknown address"
    family, bits = ((socket.AF_INET, settings.ipv4_prefix) if prefix[0] == 4
                    else (socket.AF_INET6, settings.ipv6_prefix))
    return f"{socket.inet_ntop(family, prefix[1:].ljust(prefix[0], bytes(1)))}/{bits}"
