"""The HTTP connection layer: bounded reads so slow or idle clients cannot exhaust the node.

The reference node has no read timeout: 64 idle connections take its API and /health down,
and a bad ``Content-Length`` drops the connection without a response (docs/compatibility.md
§8, items 9 and 10). Here every connection gets, on top of twisted.web's HTTP/1.1 parser:

* a body cap checked against ``Content-Length`` *before* the body is read (413, RFC 9110
  section 15.5.14), and counted for chunked bodies as they arrive;
* a per-request read deadline from the first byte of a request to its last (408, section
  15.5.9), so a client dribbling a byte at a time cannot hold a connection forever; the idle
  timeout between requests is twisted.web's own (``Site(timeout=...)``);
* a JSON ``{"error": ...}`` answer instead of twisted.web's bare 400 for a malformed request
  line, header or ``Content-Length``, and 431 for an over-long header line (RFC 6585 §5);
* connection caps with eviction (``NodeSite``, the policy of ``dmfdns.conn_table`` shared
  with DNS over TCP): at most ``max_connections`` in all and ``max_per_client`` from one
  address. When full, a quiet connection (not being answered, least recently active; the
  client's own first when it is the one at its cap, else one of the address holding most)
  is closed to make room. A new connection is never closed before its first request is
  read, until it has been open ``NEW_CONNECTION_GRACE``: so a storm of reconnecting slow
  clients cannot evict a legitimate connection that has just been accepted. Only when no
  connection may be closed is the new one refused. An idle or slowloris flood from one
  address therefore cannot lock out ``/healthz`` or a real client elsewhere.

After one of these refusals the connection reads nothing more and is closed once the
response is written.

A response goes out at most ``SEND_PIECE`` bytes per ``send()``, the reactor polling in
between: a sync answer (a digest page, a pull: a few hundred kilobytes) written in
Twisted's default 128 KiB pieces held the reactor thread inside ``send()`` for 50-120 ms
at a time, off CPU, while a node served a catching-up peer at a million records on a
loaded two-core box (``[node] stall_log``); in 16 KiB pieces those holds went away.
"""

import json
from dataclasses import dataclass

from twisted.web import http, server

from ..conn_table import ConnectionTable, close_victim

from ..twisted_private import BadRequestHook

SLOW_REQUEST = "request not received in time"
SEND_PIECE = 16 * 1024      # bytes per send() of a response (Twisted's default: 128 KiB)
# A new connection is not evicted before its first request for this long: a real client
# sends its request with the first segment after the handshake.
NEW_CONNECTION_GRACE = 1.0


def error_response(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` response with a JSON error body."""
    body = json.dumps({"error": message}).encode("utf-8")
    reason = http.RESPONSES.get(status, b"Error")
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body))


class NodeRequest(server.Request):
    """Counts a chunked body as it arrives, so the cap holds without a Content-Length, and
    takes request targets in absolute form."""

    _body_bytes = 0

    def requestReceived(self, command, path, version):
        # RFC 9112 section 3.2.2: a server must accept the absolute form
        # ("GET http://host/v1/... HTTP/1.1"), which clients send through a proxy;
        # twisted.web would route it as a path beginning "http:".
        lowered = path[:8].lower()
        if lowered.startswith(b"http://") or lowered.startswith(b"https://"):
            rest = path.split(b"://", 1)[1]
            slash = rest.find(b"/")
            query = rest.find(b"?")
            if slash == -1 or (query != -1 and query < slash):
                path = b"/" + (rest[query:] if query != -1 else b"")
            else:
                path = rest[slash:]
        super().requestReceived(command, path, version)

    def handleContentChunk(self, data):
        channel = self.channel
        if channel is None or channel.refused:
            return
        self._body_bytes += len(data)
        if self._body_bytes > channel.site.max_body_bytes:
            channel.refuse(413, body_too_large(channel.site.max_body_bytes))
            return
        super().handleContentChunk(data)


def body_too_large(cap: int) -> str:
    return f"request body exceeds cap of {cap} bytes"


class NodeChannel(BadRequestHook):
    """One HTTP/1.1 connection with the limits of its ``NodeSite``."""

    def __init__(self):
        super().__init__()
        self.refused = False
        self.busy = False        # a complete request is being answered (never evicted then)
        self._read_deadline = None

    def connectionMade(self):
        super().connectionMade()
        limit_sends(self.transport, SEND_PIECE)

    def connectionLost(self, reason):
        self._cancel_deadline()
        self.site.channel_closed(self)
        super().connectionLost(reason)

    def dataReceived(self, data):
        if self.refused:
            return
        self.site.channel_active(self)
        if not self.busy and self._read_deadline is None:
            self._read_deadline = self.callLater(self.site.request_timeout, self._too_slow)
        super().dataReceived(data)

    def allHeadersReceived(self):
        if self.length is not None and self.length > self.site.max_body_bytes:
            self.refuse(413, body_too_large(self.site.max_body_bytes))
            return
        super().allHeadersReceived()

    def rawDataReceived(self, data):
        if not self.refused:
            super().rawDataReceived(data)

    def allContentReceived(self):
        if self.refused:
            return
        self._cancel_deadline()
        self.busy = True
        self.site.request_read(self)
        super().allContentReceived()

    def requestDone(self, request):
        super().requestDone(request)
        if self.persistent:          # otherwise the connection is closing after the answer
            self.busy = False

    def lineLengthExceeded(self, line):
        self.refuse(431, "request header fields too large")

    def bad_request(self):
        # twisted.web calls this for a malformed request line, header or Content-Length.
        self.refuse(400, "malformed request")

    def timeoutConnection(self):
        self.site.counters.idle_timeouts += 1
        super().timeoutConnection()

    def _too_slow(self):
        self._read_deadline = None
        self.site.counters.slow_requests += 1
        self.refuse(408, SLOW_REQUEST)

    def _cancel_deadline(self):
        if self._read_deadline is not None:
            if self._read_deadline.active():
                self._read_deadline.cancel()
            self._read_deadline = None

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON error, read nothing more, and close."""
        if self.refused:
            return
        self.refused = True
        self._cancel_deadline()
        self.transport.write(error_response(status, message))
        self.site.request_refused(status)
        self.loseConnection()


def limit_sends(transport, piece: int) -> None:
    """Send at most ``piece`` bytes per ``send()`` on the socket under ``transport`` (a TLS
    layer wraps the TCP transport that holds the limit)."""
    while transport is not None:
        if hasattr(transport, "SEND_LIMIT"):
            transport.SEND_LIMIT = piece
            return
        transport = getattr(transport, "transport", None)


@dataclass
class HttpCounters:
    """Plain-integer connection counters, exported by the metrics collector at scrape time."""

    connections_accepted: int = 0
    connections_refused: int = 0   # full, and every connection busy or new
    connections_evicted: int = 0   # quiet connections closed to make room
    connections_open: int = 0
    idle_timeouts: int = 0
    slow_requests: int = 0         # 408: a request not received within the deadline


class NodeSite(server.Site):
    """``twisted.web.server.Site`` with the node's connection limits.

    ``refusal_observer(status)`` is told about every request the channel refuses itself
    (400, 408, 413, 431), so the request metric covers them too.
    """

    protocol = NodeChannel
    requestFactory = NodeRequest

    def __init__(self, resource, *, clock, max_connections: int, idle_timeout: float,
                 max_body_bytes: int, request_timeout: float, refusal_observer=None,
                 max_per_client: int | None = None):
        super().__init__(resource, timeout=idle_timeout, reactor=clock)
        self.noisy = False
        self.clock = clock
        self.max_connections = max_connections
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.counters = HttpCounters()
        self._refusal_observer = refusal_observer
        self._table = ConnectionTable(
            max_total=max_connections, max_per_client=max_per_client or max_connections,
            grace=NEW_CONNECTION_GRACE, is_busy=lambda channel: channel.busy)

    def buildProtocol(self, addr):
        client = getattr(addr, "host", None)
        now = self.clock.seconds()
        admit, victim = self._table.make_room(client, now)
        if victim is not None:
            self.channel_closed(victim)
            self.counters.connections_evicted += 1
            close_victim(victim.transport, self.clock, NEW_CONNECTION_GRACE)
        if not admit:
            self.counters.connections_refused += 1
            return None
        channel = super().buildProtocol(addr)
        self._table.opened(channel, client, now)
        self.counters.connections_accepted += 1
        self.counters.connections_open = len(self._table)
        return channel

    def log(self, request):
        """No access log: requests are counted in the metrics instead (one line per request
        would cost more than answering it)."""

    def channel_active(self, channel) -> None:
        self._table.active(channel)

    def request_read(self, channel) -> None:
        self._table.request_read(channel)

    def channel_closed(self, channel) -> None:
        self._table.closed(channel)
        self.counters.connections_open = len(self._table)

    def request_refused(self, status: int) -> None:
        if self._refusal_observer is not None:
            self._refusal_observer(status)
