"""One TXT query to one DNS server: UDP first, TCP when the answer is truncated.

RFC 1035 section 4.2 (UDP, TCP with two-byte framing), RFC 6891 (EDNS0, 1232-byte payload as
DNS Flag Day 2020 advises), RFC 7766 section 5 (retry over TCP on TC). Every query gets a
random ID and, over UDP, its own socket on a random port "connected" to the server, so only
that server's datagrams reach it (RFC 5452 section 9.1); a response must echo the ID and the
question. The reactor is injected; a timeout cancels the attempt and closes its socket.

Results: an ``Answer`` for NOERROR and NXDOMAIN (the values of the TXT RRset, each RR's
character-strings joined as docs/wire-format.md §1.2 says); any other rcode, a timeout, or a
malformed or mismatched response is a ``QueryFailed``. Nothing here raises on bad input.
"""

import ipaddress
import secrets
from dataclasses import dataclass

import dnslib
from twisted.internet import defer, error, protocol
from twisted.protocols import basic

from ..proto import names

EDNS_PAYLOAD = 1232
DEFAULT_TIMEOUT = 2.0
RCODE_NOERROR = 0
RCODE_NXDOMAIN = 3


class QueryFailed(Exception):
    """The server gave no usable answer (timeout, network error, bad rcode, garbage)."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_server(text: str) -> Server | None:
    """``"127.0.0.1:5353"``, ``"[::1]:5353"`` or a bare IP literal (port 53); else None."""
    if not isinstance(text, str) or not text:
        return None
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            host, port = text[1:].rstrip("]"), "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "53"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    try:
        return Server(str(ipaddress.ip_address(host)), int(port))
    except ValueError:
        return None


@dataclass(frozen=True)
class Answer:
    rcode: int
    values: tuple

    @property
    def exists(self) -> bool:
        return self.rcode == RCODE_NOERROR and bool(self.values)


def build_query(name: str, query_id: int) -> bytes:
    record = dnslib.DNSRecord(dnslib.DNSHeader(id=query_id, rd=1),
                              q=dnslib.DNSQuestion(name, dnslib.QTYPE.TXT))
    record.add_ar(dnslib.EDNS0(udp_len=EDNS_PAYLOAD))
    return record.pack()


def parse_response(data: bytes, query_id: int, name: str):
    """(truncated, Answer) for a response to our query, or None if it is not one."""
    try:
        record = dnslib.DNSRecord.parse(data)
    except Exception:  # dnslib raises many types on garbage; garbage is "no answer"
        return None
    header = record.header
    if header.id != query_id or not header.qr or len(record.questions) != 1:
        return None
    question = record.questions[0]
    if (question.qtype != dnslib.QTYPE.TXT
            or names.folded(str(question.qname)) != names.folded(name)):
        return None
    if header.tc:
        return True, None
    values = []
    for rr in record.rr:
        if rr.rtype == dnslib.QTYPE.TXT and names.folded(str(rr.rname)) == names.folded(name):
            value = b"".join(rr.rdata.data).decode("utf-8", "replace")
            if value not in values:
                values.append(value)
    return False, Answer(header.rcode, tuple(values))


class _UdpExchange(protocol.DatagramProtocol):
    """One datagram out; ``parse(data)`` says whether a datagram in is the answer."""

    def __init__(self, payload: bytes, server: Server, parse, done):
        self.payload, self.server, self.parse = payload, server, parse
        self.done = done

    def startProtocol(self):
        self.transport.connect(self.server.host, self.server.port)
        self.transport.write(self.payload)

    def datagramReceived(self, data, addr):
        parsed = self.parse(data)
        if parsed is not None and not self.done.called:
            self.done.callback(parsed)

    def connectionRefused(self):
        if not self.done.called:
            self.done.errback(QueryFailed(f"{self.server}: connection refused"))

    def stopProtocol(self):
        # The epoll reactor closes a connected UDP socket on an ICMP error (port
        # unreachable) instead of calling connectionRefused; either way there is no answer.
        if not self.done.called:
            self.done.errback(QueryFailed(f"{self.server}: socket closed before an answer "
                                          "(port unreachable?)"))


class _TcpExchange(basic.Int16StringReceiver):
    def __init__(self, payload: bytes, parse, done):
        self.payload, self.parse, self.done = payload, parse, done

    def connectionMade(self):
        self.sendString(self.payload)

    def stringReceived(self, data):
        parsed = self.parse(data)
        if parsed is not None and not self.done.called:
            self.done.callback(parsed)
        self.transport.loseConnection()

    def connectionLost(self, reason=protocol.connectionDone):
        if not self.done.called:
            self.done.errback(QueryFailed("TCP connection closed without an answer"))


class _TcpFactory(protocol.ClientFactory):
    def __init__(self, exchange):
        self.exchange = exchange

    def buildProtocol(self, addr):
        return self.exchange

    def clientConnectionFailed(self, connector, reason):
        if not self.exchange.done.called:
            self.exchange.done.errback(QueryFailed(f"TCP connect failed: "
                                                   f"{reason.getErrorMessage()}"))


class DnsClient:
    """Sends TXT queries with an injected reactor (``IReactorUDP``/``TCP``/``Time``)."""

    def __init__(self, reactor, *, timeout: float = DEFAULT_TIMEOUT):
        self.reactor = reactor
        self.timeout = timeout

    @defer.inlineCallbacks
    def query_txt(self, server: Server, name: str):
        """Deferred ``Answer`` for TXT ``name`` at ``server``; fails with ``QueryFailed``."""
        query_id = secrets.randbelow(65536)
        answer = yield self.exchange(server, build_query(name, query_id),
                                     lambda data: parse_response(data, query_id, name))
        if answer.rcode not in (RCODE_NOERROR, RCODE_NXDOMAIN):
            raise QueryFailed(f"{server}: {dnslib.RCODE.get(answer.rcode)} for {name}")
        return answer

    @defer.inlineCallbacks
    def exchange(self, server: Server, payload: bytes, parse):
        """Send ``payload`` over UDP, again over TCP when the answer is truncated; the
        Deferred fires with what ``parse`` made of the answer. ``parse(data)`` returns None
        for a datagram that is not the answer, else ``(truncated, result)``."""
        truncated, result = yield self._udp(server, payload, parse)
        if truncated:
            truncated, result = yield self._tcp(server, payload, parse)
            if truncated:
                raise QueryFailed(f"{server}: truncated answer over TCP")
        return result

    def _udp(self, server, payload, parse):
        done = defer.Deferred()
        exchange = _UdpExchange(payload, server, parse, done)
        try:
            port = self.reactor.listenUDP(0, exchange, interface=_local_interface(server))
        except error.CannotListenError as exc:
            return defer.fail(QueryFailed(f"cannot open a UDP socket: {exc}"))
        return self._bounded(done, server, "UDP", port.stopListening)

    def _tcp(self, server, payload, parse):
        done = defer.Deferred()
        exchange = _TcpExchange(payload, parse, done)
        connector = self.reactor.connectTCP(server.host, server.port, _TcpFactory(exchange),
                                            timeout=self.timeout)

        def close():
            if exchange.transport is not None:
                exchange.transport.abortConnection()
            else:
                connector.disconnect()
        return self._bounded(done, server, "TCP", close)

    def _bounded(self, done, server, transport_name, close):
        """``done`` with the timeout applied and the socket closed whatever happens."""
        timer = self.reactor.callLater(self.timeout, _fail_if_pending, done,
                                       QueryFailed(f"{server}: no {transport_name} answer "
                                                   f"within {self.timeout:g} s"))

        def finish(outcome):
            if timer.active():
                timer.cancel()
            close()
            return outcome
        return done.addBoth(finish)


def _fail_if_pending(done, failure) -> None:
    if not done.called:
        done.errback(failure)


def _local_interface(server: Server) -> str:
    """Bind the client socket to loopback when the server is on loopback (tests stay there),
    else to the wildcard of the server's address family."""
    address = ipaddress.ip_address(server.host)
    if address.is_loopback:
        return server.host
    return "::" if address.version == 6 else "0.0.0.0"
