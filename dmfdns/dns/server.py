"""DNS over UDP and TCP: thin Twisted protocols that frame bytes for the pure responder.

Everything about the answer is decided by ``respond(query, *, now, max_udp, proto, client)``
(``dmfdns.dns.responder``); this module only moves bytes, keeps per-transport counters and
enforces the transport's own limits:

* UDP: one datagram in, at most one out; ``None`` from the responder means silence (a
  response packet, a runt). Replies go out through the listening socket's own ``sendto``
  (``getHandle()``): Twisted's ``Port.write`` re-checks that the address is an IP literal
  three times per datagram, and the address here is always the one ``recvfrom`` gave. A
  failed send is dropped and counted, as Twisted would raise it (EAGAIN when the socket
  buffer is full, an unreachable destination), except ECONNREFUSED, which Twisted ignores
  on an unconnected socket (it reports an earlier datagram, not this one).
* TCP (RFC 1035 §4.2.2, RFC 7766): two-byte length framing with a cap on the length,
  pipelined queries answered in order (the responder is synchronous), each response written
  as length + message in one write, an idle timeout counted from the last complete query
  (a client dribbling bytes does not keep a connection alive, RFC 7766 §6.2.3), caps on
  open connections per listener and per client address (RFC 7766 §10) where a new
  connection closes a quiet one rather than being locked out (``dmfdns.conn_table``), and
  backpressure: when a client stops reading, the server stops reading its queries.

The stock twisted.names protocols are not used: their TCP framing raises on a split length
prefix and their server never truncates UDP (docs/decisions.md §4.4). Time comes from the
injected clock (an ``IReactorTime``), never the global reactor; the only other clock is
``time.perf_counter``, to measure how long the responder took (``observe_duration``).
"""

import time
from dataclasses import dataclass, fields
from errno import ECONNREFUSED

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols import basic, policies

from ..conn_table import ConnectionTable, close_victim
from .padding import pad_response
from .render import servfail_for
from .xfr import is_transfer
from .xfr_pump import TransferPump

RESPONDER_FAILURE_LOG_INTERVAL = 60.0
# A new TCP connection is not evicted before its first query for this long (Knot's
# tcp-io-timeout is 0.5 s: a real client sends its query in the first segment).
NEW_CONNECTION_GRACE = 1.0
log = Logger(namespace="dmfdns.dns")


@dataclass
class TransportCounters:
    """Plain-integer counters of one listener (exported at scrape time, never locked)."""

    queries: int = 0            # messages received (datagrams or TCP frames)
    responses: int = 0          # responses sent
    dropped: int = 0            # the responder chose silence
    errors: int = 0             # the responder raised (a bug: logged, rate-limited)
    connections_accepted: int = 0
    connections_refused: int = 0   # full, and every connection was working or new
    connections_evicted: int = 0   # quiet connections closed to make room
    connections_open: int = 0
    idle_timeouts: int = 0
    oversize_closed: int = 0       # a length prefix over max_tcp_message

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FailureLog:
    """Logs a responder failure at most once per interval, so a bug that every packet
    triggers cannot flood the log (docs/decisions.md §8.2)."""

    def __init__(self, clock, log: Logger, interval: float = RESPONDER_FAILURE_LOG_INTERVAL):
        self._clock = clock
        self._log = log
        self._interval = interval
        self._next = None
        self._suppressed = 0

    def failure(self, proto: str) -> None:
        """Call from inside the ``except`` block: the traceback is taken from there."""
        now = self._clock.seconds()
        if self._next is not None and now < self._next:
            self._suppressed += 1
            return
        self._log.failure("DNS responder failed on a {proto} query ({suppressed} more "
                          "suppressed since the last report)", proto=proto,
                          suppressed=self._suppressed)
        self._suppressed = 0
        self._next = now + self._interval


def _client_host(address) -> str | None:
    try:
        return address[0] if isinstance(address, tuple) else address.host
    except AttributeError:
        return None


def _connected(sock) -> bool:
    """Whether a UDP socket is connected (then replies go through ``transport.write``)."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _timed(observe, label: str, respond, query: bytes, **kwargs):
    """``respond(query, **kwargs)``, reporting its duration to ``observe(label, seconds)``."""
    if observe is None:
        return respond(query, **kwargs)
    started = time.perf_counter()
    response = respond(query, **kwargs)
    observe(label, time.perf_counter() - started)
    return response


class DNSDatagramProtocol(protocol.DatagramProtocol):
    """DNS over UDP: each datagram is answered by the responder or dropped."""

    noisy = False  # no "Starting protocol" log line per listener

    def __init__(self, responder, clock, *, max_udp: int, counters=None,
                 proto: str = "udp", observe_duration=None):
        self.responder = responder
        self.clock = clock
        self.max_udp = max_udp
        self.proto = proto
        self.counters = counters if counters is not None else TransportCounters()
        self.observe_duration = observe_duration
        self._failures = FailureLog(clock, log)
        self._send = None             # (transport, send) once a transport is attached

    def startProtocol(self) -> None:
        self._send = None             # a new listening socket: look it up again

    def stopProtocol(self) -> None:
        self._send = None

    def _sender(self):
        """``send(datagram, addr)`` for the current transport: the socket's ``sendto`` for
        a listening port, its ``write`` for anything else (a connected port, a fake)."""
        transport = self.transport
        handle = getattr(transport, "getHandle", None)
        sock = handle() if handle is not None else None
        if sock is not None and hasattr(sock, "sendto") and not _connected(sock):
            send = sock.sendto
        else:
            send = transport.write
        self._send = (transport, send)
        return send

    def datagramReceived(self, data: bytes, addr) -> None:
        counters = self.counters
        counters.queries += 1
        observe = self.observe_duration
        try:
            if observe is None:
                response = self.responder.respond(
                    data, now=self.clock.seconds(), max_udp=self.max_udp, proto=self.proto,
                    client=_client_host(addr))
            else:
                started = time.perf_counter()
                response = self.responder.respond(
                    data, now=self.clock.seconds(), max_udp=self.max_udp, proto=self.proto,
                    client=_client_host(addr))
                observe(self.proto, time.perf_counter() - started)
        except Exception:
            counters.errors += 1
            self._failures.failure(self.proto)
            response = servfail_for(data)
        if response is None:
            counters.dropped += 1
            return
        sending = self._send
        send = (sending[1] if sending is not None and sending[0] is self.transport
                else self._sender())
        try:
            send(response, addr)
        except OSError as error:
            # An unreachable or rate-limited destination is the client's problem; the
            # listener must go on serving everyone else.
            if error.errno != ECONNREFUSED:
                counters.errors += 1
                return
        counters.responses += 1


class DNSStreamProtocol(basic.Int16StringReceiver, policies.TimeoutMixin):
    """DNS over TCP: length-prefixed queries, answered in order on the same connection.

    ``Int16StringReceiver`` is also a push producer: registered with its own transport, it
    stops reading when the client stops reading responses (a bound on queued output).
    """

    def __init__(self, factory: "DNSStreamFactory", client: str | None):
        self.factory = factory
        self.client = client
        self.MAX_LENGTH = factory.max_message
        # TimeoutMixin schedules through self.callLater; use the injected clock.
        self.callLater = factory.clock.callLater

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self.setTimeout(self.factory.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        self.factory.table.active(self)
        super().dataReceived(data)

    def stringReceived(self, query: bytes) -> None:
        if self.transport.disconnecting:
            return  # closing: frames still buffered behind the reason must not be answered
        factory = self.factory
        factory.table.request_read(self)
        factory.counters.queries += 1
        self.resetTimeout()
        if factory.transfers is not None and is_transfer(query):
            self._transfer(query)
            return
        try:
            response = _timed(factory.observe_duration, factory.proto,
                              factory.responder.respond, query,
                              now=factory.clock.seconds(), max_udp=None,
                              proto=factory.proto, client=self.client)
        except Exception:
            factory.counters.errors += 1
            factory.failures.failure(factory.proto)
            response = servfail_for(query)
            if response is None:
                # Answers must stay in order; without one for this query, end the stream.
                self.transport.loseConnection()
                return
        if response is None:
            factory.counters.dropped += 1
            return
        if factory.pad_responses:
            response = pad_response(query, response)
        self.sendString(response)
        factory.counters.responses += 1

    def _transfer(self, query: bytes) -> None:
        """AXFR/IXFR: a stream of messages written as the client reads (``xfr_pump``)."""
        factory = self.factory
        try:
            transfer = factory.transfers.start(query, now=factory.clock.seconds(),
                                               client=self.client, tcp=True)
        except Exception:
            factory.counters.errors += 1
            factory.failures.failure(factory.proto)
            self.transport.loseConnection()
            return
        if transfer is None:
            factory.counters.dropped += 1
            return
        factory.counters.responses += 1
        TransferPump(self, transfer, factory.clock, factory.transfers.counters).start()

    def lengthLimitExceeded(self, length: int) -> None:
        self.factory.counters.oversize_closed += 1
        self.transport.loseConnection()

    def timeoutConnection(self) -> None:
        self.factory.counters.idle_timeouts += 1
        if self.paused:
            # The client stopped reading: queued responses would never drain.
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self.setTimeout(None)
        self.factory.connection_closed(self)


class DNSStreamFactory(protocol.ServerFactory):
    """Builds DNSStreamProtocol connections within the listener's connection caps: past
    ``max_connections`` in total or ``max_per_client`` from one address, a quiet connection
    is closed to make room (the client's own first, else one of the address holding most);
    only when none may be closed is the new connection closed at once."""

    noisy = False

    def __init__(self, responder, clock, *, idle_timeout: float, max_connections: int,
                 max_per_client: int | None = None, max_message: int = 65535,
                 counters=None, proto: str = "tcp", observe_duration=None,
                 transfers=None, pad_responses: bool = False):
        self.responder = responder
        self.pad_responses = pad_responses  # DNS over TLS: EDNS padding (dns.padding)
        self.transfers = transfers          # xfr.Transfers, None: the responder refuses
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_message = max_message
        self.proto = proto
        self.counters = counters if counters is not None else TransportCounters()
        self.observe_duration = observe_duration
        self.failures = FailureLog(clock, log)
        self.table = ConnectionTable(
            max_total=max_connections, max_per_client=max_per_client or max_connections,
            grace=NEW_CONNECTION_GRACE)

    def buildProtocol(self, addr):
        client = _client_host(addr)
        now = self.clock.seconds()
        admit, victim = self.table.make_room(client, now)
        if victim is not None:
            self.connection_closed(victim)
            self.counters.connections_evicted += 1
            close_victim(victim.transport, self.clock, NEW_CONNECTION_GRACE)
        if not admit:
            self.counters.connections_refused += 1
            return None  # Twisted closes the accepted socket
        connection = DNSStreamProtocol(self, client)
        self.table.opened(connection, client, now)
        self.counters.connections_accepted += 1
        self.counters.connections_open = len(self.table)
        return connection

    def connection_closed(self, connection: DNSStreamProtocol) -> None:
        self.table.closed(connection)
        self.counters.connections_open = len(self.table)
