"""The DNS transports with fakes: StringTransport, a fake datagram transport, task.Clock."""

import errno
import struct

import pytest
from twisted.internet import address, task
from twisted.internet.testing import StringTransport

from dmfdns.dns.server import DNSDatagramProtocol, DNSStreamFactory, TransportCounters

CLIENT = address.IPv4Address("TCP", "127.0.0.9", 40000)


# A query (ID 0xbeef, RD, one question "a.test" TXT IN) on which the fake responder raises.
BUG_QUERY = bytes.fromhex("beef0100000100000000000001610474657374000010" "0001")
BUG_SERVFAIL = bytes.fromhex("beef8102000100000000000001610474657374000010" "0001")


class FakeResponder:
    """Answers ``b"q:" + x`` with ``b"a:" + x``; None for b"drop"; raises on b"boom"."""

    def __init__(self):
        self.calls = []

    def respond(self, query, *, now, max_udp, proto, client=None):
        self.calls.append(dict(query=query, now=now, max_udp=max_udp, proto=proto,
                               client=client))
        if query == b"boom" or query.startswith(BUG_QUERY[:4]):
            raise RuntimeError("bug")
        if query == b"drop":
            return None
        return b"a:" + query[2:]


class FakeDatagramTransport:
    def __init__(self, fail=False):
        self.written = []
        self.fail = fail

    def write(self, data, addr):
        if self.fail:
            raise OSError("unreachable")
        self.written.append((data, addr))


def frame(message: bytes) -> bytes:
    return struct.pack(">H", len(message)) + message


def unframe(data: bytes) -> list[bytes]:
    messages = []
    while data:
        (length,) = struct.unpack(">H", data[:2])
        messages.append(data[2:2 + length])
        data = data[2 + length:]
    return messages


# --- UDP -----------------------------------------------------------------------------------

def make_udp(**kw):
    clock = task.Clock()
    clock.advance(1000.5)
    responder = FakeResponder()
    udp = DNSDatagramProtocol(responder, clock, max_udp=1232, **kw)
    udp.transport = FakeDatagramTransport()
    return udp, responder


def test_udp_answers_with_now_max_udp_and_client():
    udp, responder = make_udp()
    udp.datagramReceived(b"q:1", ("127.0.0.2", 5000))
    assert udp.transport.written == [(b"a:1", ("127.0.0.2", 5000))]
    assert responder.calls == [dict(query=b"q:1", now=1000.5, max_udp=1232, proto="udp",
                                    client="127.0.0.2")]
    assert (udp.counters.queries, udp.counters.responses) == (1, 1)


def test_udp_drops_what_the_responder_declines():
    udp, _ = make_udp()
    udp.datagramReceived(b"drop", ("127.0.0.2", 5000))
    assert udp.transport.written == []
    assert udp.counters.dropped == 1 and udp.counters.responses == 0


def test_udp_survives_a_responder_bug_and_logs_it_rate_limited(capture_failures):
    udp, _ = make_udp()
    for _ in range(3):
        udp.datagramReceived(b"boom", ("127.0.0.2", 5000))
    udp.datagramReceived(b"q:ok", ("127.0.0.2", 5000))
    assert udp.counters.errors == 3
    assert udp.transport.written == [(b"a:ok", ("127.0.0.2", 5000))]
    assert len(capture_failures) == 1  # two more suppressed within the interval


def test_udp_responder_bug_is_answered_servfail_counted_and_logged_once(capture_failures):
    udp, _ = make_udp()
    for _ in range(3):
        udp.datagramReceived(BUG_QUERY, ("127.0.0.2", 5000))
    assert udp.transport.written == [(BUG_SERVFAIL, ("127.0.0.2", 5000))] * 3
    assert udp.counters.errors == 3 and udp.counters.responses == 3
    assert len(capture_failures) == 1
    assert "RuntimeError" in capture_failures[0]["log_failure"].getTraceback()
    udp.clock.advance(61)                           # the next interval logs again
    udp.datagramReceived(BUG_QUERY, ("127.0.0.2", 5000))
    assert len(capture_failures) == 2 and "2 more suppressed" in (
        capture_failures[1]["log_format"].format(**capture_failures[1]))


def test_tcp_responder_bug_is_answered_servfail_in_order(capture_failures):
    factory, _, _ = make_factory()
    conn, transport = connect(factory)
    conn.dataReceived(frame(b"q:1") + frame(BUG_QUERY) + frame(b"q:3"))
    assert unframe(transport.value()) == [b"a:1", BUG_SERVFAIL, b"a:3"]
    assert factory.counters.errors == 1 and not transport.disconnecting
    assert len(capture_failures) == 1


def test_udp_send_error_is_counted_not_raised():
    udp, _ = make_udp()
    udp.transport = FakeDatagramTransport(fail=True)
    udp.datagramReceived(b"q:1", ("127.0.0.2", 5000))
    assert udp.counters.errors == 1 and udp.counters.responses == 0


class FakeSocket:
    def __init__(self, error=None):
        self.sent = []
        self.error = error

    def sendto(self, data, addr):
        if self.error is not None:
            raise OSError(self.error, "fake")
        self.sent.append((data, addr))
        return len(data)

    def getpeername(self):
        raise OSError(errno.ENOTCONN, "not connected")   # a listening (unconnected) socket


class FakePort(FakeDatagramTransport):
    """A listening port as Twisted's: its socket is ``getHandle()``."""

    def __init__(self, sock):
        super().__init__()
        self.sock = sock

    def getHandle(self):
        return self.sock


def test_udp_replies_through_the_listening_sockets_sendto():
    udp, _ = make_udp()
    sock = FakeSocket()
    udp.transport = FakePort(sock)
    udp.datagramReceived(b"q:1", ("127.0.0.2", 5000))
    udp.datagramReceived(b"q:2", ("127.0.0.3", 5001))
    assert sock.sent == [(b"a:1", ("127.0.0.2", 5000)), (b"a:2", ("127.0.0.3", 5001))]
    assert udp.transport.written == []               # Port.write's checks are skipped
    assert udp.counters.responses == 2
    # A new transport (a fake, or the port listening again) is picked up.
    udp.transport = FakeDatagramTransport()
    udp.datagramReceived(b"q:3", ("127.0.0.2", 5000))
    assert udp.transport.written == [(b"a:3", ("127.0.0.2", 5000))]


@pytest.mark.parametrize("error, errors, responses", [
    (errno.EAGAIN, 1, 0), (errno.EMSGSIZE, 1, 0), (errno.ENETUNREACH, 1, 0),
    (errno.ECONNREFUSED, 0, 1)])
def test_udp_send_failures_are_dropped_and_counted_as_twisted_would(error, errors,
                                                                    responses):
    udp, _ = make_udp()
    udp.transport = FakePort(FakeSocket(error))
    udp.datagramReceived(b"q:1", ("127.0.0.2", 5000))
    assert (udp.counters.errors, udp.counters.responses) == (errors, responses)


def test_udp_protocol_passes_its_proto_label():
    udp, responder = make_udp(proto="udp6")
    udp.datagramReceived(b"q:1", ("::1", 5000, 0, 0))
    assert responder.calls[0]["proto"] == "udp6"
    assert responder.calls[0]["client"] == "::1"


@pytest.fixture
def capture_failures():
    from twisted.logger import globalLogPublisher
    seen = []

    def observer(event):
        if event.get("log_failure") is not None:
            seen.append(event)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


# --- TCP -----------------------------------------------------------------------------------

def make_factory(**kw):
    clock = task.Clock()
    responder = FakeResponder()
    options = dict(idle_timeout=10.0, max_connections=2, max_message=512)
    options.update(kw)
    factory = DNSStreamFactory(responder, clock, **options)
    return factory, responder, clock


def connect(factory):
    conn = factory.buildProtocol(CLIENT)
    if conn is None:
        return None, None
    transport = StringTransport(peerAddress=CLIENT)
    conn.makeConnection(transport)
    return conn, transport


def close(conn, transport):
    transport.loseConnection()
    conn.connectionLost(None)


def test_tcp_pipelined_queries_are_answered_in_order():
    factory, responder, _ = make_factory()
    conn, transport = connect(factory)
    conn.dataReceived(frame(b"q:1") + frame(b"q:2") + frame(b"q:3"))
    assert unframe(transport.value()) == [b"a:1", b"a:2", b"a:3"]
    assert [c["max_udp"] for c in responder.calls] == [None, None, None]
    assert {c["proto"] for c in responder.calls} == {"tcp"}
    assert responder.calls[0]["client"] == "127.0.0.9"
    assert factory.counters.queries == 3 and factory.counters.responses == 3


def test_tcp_each_response_is_one_write():
    factory, _, _ = make_factory()
    conn, transport = connect(factory)
    writes = []
    transport.write = writes.append
    conn.dataReceived(frame(b"q:1") + frame(b"q:2"))
    assert writes == [frame(b"a:1"), frame(b"a:2")]


def test_tcp_split_length_prefix_and_body_are_reassembled():
    factory, _, _ = make_factory()
    conn, transport = connect(factory)
    data = frame(b"q:hello")
    for byte in data:
        conn.dataReceived(bytes([byte]))
    assert unframe(transport.value()) == [b"a:hello"]
    assert not transport.disconnecting


def test_tcp_oversize_length_prefix_closes():
    factory, responder, _ = make_factory(max_message=100)
    conn, transport = connect(factory)
    conn.dataReceived(struct.pack(">H", 101))
    assert transport.disconnecting
    assert factory.counters.oversize_closed == 1
    assert responder.calls == []


def test_tcp_message_at_the_cap_is_accepted():
    factory, _, _ = make_factory(max_message=100)
    conn, transport = connect(factory)
    conn.dataReceived(frame(b"q:" + b"x" * 98))
    assert unframe(transport.value()) == [b"a:" + b"x" * 98]


def test_tcp_dropped_query_keeps_the_connection():
    factory, _, _ = make_factory()
    conn, transport = connect(factory)
    conn.dataReceived(frame(b"drop") + frame(b"q:2"))
    assert unframe(transport.value()) == [b"a:2"]
    assert factory.counters.dropped == 1 and not transport.disconnecting


def test_tcp_responder_bug_closes_instead_of_answering_out_of_order():
    factory, _, _ = make_factory()
    conn, transport = connect(factory)
    conn.dataReceived(frame(b"q:1") + frame(b"boom") + frame(b"q:3"))
    assert unframe(transport.value()) == [b"a:1"]
    assert transport.disconnecting and factory.counters.errors == 1
    assert factory.counters.queries == 2


def test_tcp_idle_timeout_closes_after_the_last_query():
    factory, _, clock = make_factory(idle_timeout=10.0)
    conn, transport = connect(factory)
    clock.advance(9)
    conn.dataReceived(frame(b"q:1"))
    clock.advance(9)
    assert not transport.disconnecting
    clock.advance(1.5)
    assert transport.disconnecting
    assert factory.counters.idle_timeouts == 1


def test_tcp_dribbled_bytes_do_not_keep_a_connection_alive():
    factory, _, clock = make_factory(idle_timeout=10.0)
    conn, transport = connect(factory)
    conn.dataReceived(b"\x00")
    for _ in range(10):
        clock.advance(1)
        conn.dataReceived(b"")
    assert transport.disconnecting


def test_tcp_timer_is_cancelled_when_the_client_leaves():
    factory, _, clock = make_factory()
    conn, transport = connect(factory)
    close(conn, transport)
    assert clock.getDelayedCalls() == []
    assert factory.counters.connections_open == 0


def test_tcp_connection_cap_refuses_while_every_connection_is_new_until_one_closes():
    factory, _, _ = make_factory(max_connections=2)
    first, first_transport = connect(factory)
    second, _ = connect(factory)
    assert connect(factory) == (None, None)
    assert factory.counters.connections_refused == 1
    assert factory.counters.connections_open == 2
    close(first, first_transport)
    third, _ = connect(factory)
    assert third is not None
    assert factory.counters.connections_accepted == 3


def test_tcp_stops_reading_while_the_client_does_not_read():
    factory, _, clock = make_factory()
    conn, transport = connect(factory)
    assert transport.producer is conn and transport.streaming
    conn.pauseProducing()           # the transport's write buffer is full
    assert transport.producerState == "paused"
    conn.dataReceived(frame(b"q:1"))
    assert transport.value() == b""  # queries wait while paused
    conn.resumeProducing()
    assert unframe(transport.value()) == [b"a:1"]


def test_tcp_idle_timeout_aborts_a_client_that_never_reads():
    factory, _, clock = make_factory(idle_timeout=5.0)
    conn, transport = connect(factory)
    aborted = []
    transport.abortConnection = lambda: aborted.append(True)
    conn.pauseProducing()
    clock.advance(5)
    assert aborted == [True]


def test_counters_are_plain_integers():
    counters = TransportCounters()
    counters.queries += 2
    assert counters.as_dict()["queries"] == 2
    assert all(isinstance(v, int) for v in counters.as_dict().values())


def test_responder_time_is_reported_per_transport():
    seen = []
    clock = task.Clock()
    udp = DNSDatagramProtocol(FakeResponder(), clock, max_udp=1232,
                              observe_duration=lambda proto, s: seen.append((proto, s)))
    udp.transport = FakeDatagramTransport()
    udp.datagramReceived(b"q:1", ("127.0.0.2", 5000))
    factory, _, _ = make_factory(observe_duration=lambda proto, s: seen.append((proto, s)))
    conn, _ = connect(factory)
    conn.dataReceived(frame(b"q:2"))
    assert [proto for proto, _ in seen] == ["udp", "tcp"]
    assert all(0 <= seconds < 1 for _, seconds in seen)


def connect_from(factory, host):
    peer = address.IPv4Address("TCP", host, 40000)
    conn = factory.buildProtocol(peer)
    if conn is None:
        return None, None
    transport = StringTransport(peerAddress=peer)
    conn.makeConnection(transport)
    return conn, transport


def test_tcp_full_listener_closes_a_quiet_connection_of_the_biggest_holder():
    factory, _, clock = make_factory(max_connections=4, max_per_client=10)
    hog = [connect_from(factory, "192.0.2.66") for _ in range(3)]
    other, other_transport = connect_from(factory, "192.0.2.7")
    clock.advance(2)  # past the grace of new connections
    newcomer, _ = connect_from(factory, "198.51.100.1")
    assert newcomer is not None
    assert hog[0][1].disconnecting and not other_transport.disconnecting
    assert factory.counters.connections_evicted == 1
    assert factory.counters.connections_open == 4


def test_tcp_client_at_its_cap_closes_its_own_quiet_connection_not_others():
    factory, _, clock = make_factory(max_connections=100, max_per_client=2)
    first, first_transport = connect_from(factory, "192.0.2.66")
    second, second_transport = connect_from(factory, "192.0.2.66")
    assert connect_from(factory, "192.0.2.66") == (None, None)  # both still new: refused
    first.dataReceived(frame(b"q:1"))  # answered: no longer protected as new
    third, _ = connect_from(factory, "192.0.2.66")
    assert third is not None and first_transport.disconnecting
    assert not second_transport.disconnecting
    assert factory.counters.connections_refused == 1
    assert factory.counters.connections_evicted == 1


def test_tcp_new_connection_is_not_evicted_before_its_first_query():
    factory, _, clock = make_factory(max_connections=2, max_per_client=10)
    old, old_transport = connect_from(factory, "192.0.2.66")
    clock.advance(5)
    fresh, fresh_transport = connect_from(factory, "192.0.2.7")
    late, _ = connect_from(factory, "198.51.100.1")
    assert late is not None and old_transport.disconnecting
    assert not fresh_transport.disconnecting
    assert connect_from(factory, "203.0.113.9") == (None, None)  # only new ones left
