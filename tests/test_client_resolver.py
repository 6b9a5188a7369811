"""DNS reads: one query (UDP, TCP on TC), the resolver pool's health logic, the union reader.

The pool and the union reader are unit-tested with a fake query function and ``task.Clock``;
the query itself and the pool's failover are also exercised over real loopback sockets
against small test servers that can be told to stop answering.
"""

import dnslib
import pytest
import pytest_twisted
from twisted.internet import defer, protocol, task
from twisted.internet.error import CannotListenError
from twisted.protocols import basic

from dmfdns.client.dnsquery import (Answer, DnsClient, QueryFailed, Server, build_query,
                                    parse_response, parse_server)
from dmfdns.client.reader import RoutedReader, UnionReader
from dmfdns.client.resolver import ReadError, ResolverPool


# --- fakes ------------------------------------------------------------------------------

class FakeDns:
    """``query_txt`` whose outcome per server is scripted: answer, fail, silent or delay."""

    def __init__(self, clock, timeout=2.0):
        self.clock, self.timeout = clock, timeout
        self.mode, self.data, self.calls = {}, {}, []

    def query_txt(self, server, name):
        self.calls.append((server, name))
        mode = self.mode.get(server, "answer")
        answer = Answer(0 if self.data.get(server, {}).get(name) else 3,
                        tuple(self.data.get(server, {}).get(name, [])))
        if mode == "answer":
            return defer.succeed(answer)
        if mode == "fail":
            return defer.fail(QueryFailed(f"{server}: refused"))
        done = defer.Deferred()
        if mode == "silent":
            self.clock.callLater(self.timeout, _errback_if_waiting, done,
                                 QueryFailed(f"{server}: timeout"))
        else:  # ("delay", seconds)
            self.clock.callLater(mode[1], _callback_if_waiting, done, answer)
        return done


def _errback_if_waiting(d, exc):
    if not d.called:
        d.errback(exc)


def _callback_if_waiting(d, value):
    if not d.called:
        d.callback(value)


S1, S2, S3 = Server("127.0.0.1", 1), Server("127.0.0.1", 2), Server("127.0.0.1", 3)


def _results(d):
    out = []
    d.addBoth(out.append)
    return out


# --- parsing ----------------------------------------------------------------------------

def test_server_text_forms():
    assert parse_server("127.0.0.1:5353") == Server("127.0.0.1", 5353)
    assert parse_server("[::1]:53") == Server("::1", 53)
    assert parse_server("10.0.0.1") == Server("10.0.0.1", 53)
    assert parse_server("::1") == Server("::1", 53)
    for bad in ("", "ns1.example:53", "127.0.0.1:0", "127.0.0.1:99999", "[::1]:x", None):
        assert parse_server(bad) is None


def _reply(query: bytes, values, **header):
    request = dnslib.DNSRecord.parse(query)
    reply = request.reply()
    for value in values:
        reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.TXT, ttl=5,
                                   rdata=dnslib.TXT([value[i:i + 255]
                                                     for i in range(0, len(value), 255)])))
    for key, item in header.items():
        setattr(reply.header, key, item)
    return reply.pack()


def test_a_response_must_match_the_query():
    query = build_query("a.mesh.test", 1234)
    good = _reply(query, [b"x" * 300])
    assert parse_response(good, 1234, "A.Mesh.Test.") == (False, Answer(0, ("x" * 300,)))
    assert parse_response(good, 4321, "a.mesh.test") is None
    assert parse_response(good, 1234, "b.mesh.test") is None
    assert parse_response(query, 1234, "a.mesh.test") is None          # not a response
    assert parse_response(b"\x00" * 5, 1234, "a.mesh.test") is None
    assert parse_response(_reply(query, [], tc=1), 1234, "a.mesh.test") == (True, None)
    assert parse_response(_reply(query, [], rcode=3), 1234, "a.mesh.test")[1].rcode == 3


# --- the pool ---------------------------------------------------------------------------

def test_the_pool_fails_over_and_cools_a_failing_server_down():
    clock = task.Clock()
    dns = FakeDns(clock)
    dns.data = {S2: {"n": ["v"]}, S3: {"n": ["v"]}}
    dns.mode[S1] = "fail"
    pool = ResolverPool([S1, S2, S3], dns, clock, backoff=5, max_backoff=40)
    assert _results(pool.read("n")) == [["v"]]
    assert [s for s, _ in dns.calls] == [S1, S2]
    dns.calls.clear()
    assert _results(pool.read("n")) == [["v"]]
    assert [s for s, _ in dns.calls] == [S2]          # S1 is cooling down
    clock.advance(5)
    dns.calls.clear()
    pool.read("n")
    assert [s for s, _ in dns.calls] == [S1, S2]      # tried again, failed again
    assert pool.health[0].failures == 2 and pool.health[0].retry_at == 5 + 10


def test_the_backoff_doubles_up_to_its_cap():
    clock = task.Clock()
    dns = FakeDns(clock)
    dns.mode[S1] = "fail"
    pool = ResolverPool([S1, S2], dns, clock, backoff=5, max_backoff=40)
    delays = []
    for _ in range(6):
        clock.advance(100)
        pool.read("n")
        delays.append(pool.health[0].retry_at - clock.seconds())
    assert delays == [5, 10, 20, 40, 40, 40]


def test_a_returning_server_is_healthy_after_its_first_answer():
    clock = task.Clock()
    dns = FakeDns(clock)
    dns.mode[S1] = "fail"
    pool = ResolverPool([S1, S2], dns, clock, backoff=5)
    pool.read("n")
    dns.mode[S1] = "answer"
    clock.advance(5)
    dns.calls.clear()
    pool.read("n")
    assert [s for s, _ in dns.calls] == [S1]
    assert pool.health[0].failures == 0 and pool.health[0].answers == 1


def test_cooled_down_servers_are_still_tried_when_nobody_else_answers():
    clock = task.Clock()
    dns = FakeDns(clock)
    dns.mode = {S1: "fail", S2: "fail"}
    pool = ResolverPool([S1, S2], dns, clock)
    out = _results(pool.read("n"))
    assert isinstance(out[0].value, ReadError)
    dns.mode[S2] = "answer"
    dns.calls.clear()
    assert _results(pool.read("n")) == [[]]            # NXDOMAIN from S2
    assert [s for s, _ in dns.calls] == [S1, S2]       # S1 (earlier retry) first, then S2


def test_a_silent_server_costs_one_timeout_then_is_skipped():
    clock = task.Clock()
    dns = FakeDns(clock, timeout=2.0)
    dns.mode[S1] = "silent"
    dns.data = {S2: {"n": ["v"]}}
    pool = ResolverPool([S1, S2, S3], dns, clock)
    first = _results(pool.read("n"))
    assert first == []
    clock.advance(2.0)
    assert first == [["v"]]
    second = _results(pool.read("n"))
    assert second == [["v"]]                           # no waiting this time


# --- the union reader -------------------------------------------------------------------

def test_the_union_reader_answers_after_a_majority_without_the_slowest():
    clock = task.Clock()
    dns = FakeDns(clock)
    dns.data = {S1: {"n": ["a"]}, S2: {"n": ["b", "a"]}, S3: {"n": ["c"]}}
    dns.mode[S3] = ("delay", 10.0)
    reader = UnionReader([S1, S2, S3], dns, clock, grace=0.05)
    out = _results(reader.read("n"))
    assert out == []
    clock.advance(0.05)
    assert out == [["a", "b"]]


def test_the_union_reader_includes_a_node_that_answers_within_the_grace():
    clock = task.Clock()
    dns = FakeDns(clock)
    dns.data = {S1: {"n": ["a"]}, S2: {"n": ["a"]}, S3: {"n": ["late"]}}
    dns.mode[S3] = ("delay", 0.01)
    out = _results(UnionReader([S1, S2, S3], dns, clock, grace=0.05).read("n"))
    clock.advance(0.01)
    assert out == [["a", "late"]]


def test_the_union_reader_returns_what_a_minority_had_and_fails_when_nobody_answers():
    clock = task.Clock()
    dns = FakeDns(clock)
    dns.data = {S1: {"n": ["only"]}}
    dns.mode = {S2: "fail", S3: "silent"}
    out = _results(UnionReader([S1, S2, S3], dns, clock).read("n"))
    clock.advance(2.0)
    assert out == [["only"]]
    dns.mode[S1] = "fail"
    out = _results(UnionReader([S1, S2, S3], dns, clock).read("n"))
    clock.advance(2.0)
    assert isinstance(out[0].value, ReadError)


def test_routing_sends_cluster_names_to_the_nodes_and_others_to_resolvers():
    cluster, outside = object(), object()
    routed = RoutedReader(["Mesh.Test."], cluster, outside)
    assert routed.route("slot-1.mb-x.mesh.test") is cluster
    assert routed.route("mesh.test") is cluster
    assert routed.route("evilmesh.test") is outside
    assert routed.route("example.com") is outside
    assert RoutedReader(["mesh.test"], cluster).route("example.com") is cluster


# --- real sockets -----------------------------------------------------------------------

class _TestDnsServer:
    """A loopback UDP+TCP server answering TXT from ``data``; ``silent`` drops everything.

    UDP answers larger than 512 bytes (or the client's EDNS size) come back truncated, so
    the client has to retry over TCP.
    """

    def __init__(self, reactor, data):
        self.data, self.silent, self.udp_queries, self.tcp_queries = data, False, 0, 0
        for _ in range(50):   # a free UDP port whose TCP twin is free too
            self.udp = reactor.listenUDP(0, _Udp(self), interface="127.0.0.1")
            port = self.udp.getHost().port
            try:
                self.tcp = reactor.listenTCP(port, _TcpFactory(self), interface="127.0.0.1")
                break
            except CannotListenError:
                self.udp.stopListening()
        self.server = Server("127.0.0.1", port)

    def answer(self, query: bytes, limit: int | None):
        try:
            request = dnslib.DNSRecord.parse(query)
        except Exception:
            return None
        name = str(request.q.qname).rstrip(".").lower()
        values = self.data.get(name)
        reply = request.reply()
        if values is None:
            reply.header.rcode = 3
        for value in values or []:
            data = value.encode()
            reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.TXT, ttl=5, rdata=dnslib.TXT(
                [data[i:i + 255] for i in range(0, len(data), 255)])))
        packed = reply.pack()
        if limit is not None and len(packed) > limit:
            reply = request.reply()
            reply.header.tc = 1
            packed = reply.pack()
        return packed

    def stop(self):
        return defer.gatherResults([defer.maybeDeferred(self.udp.stopListening),
                                    defer.maybeDeferred(self.tcp.stopListening)])


class _Udp(protocol.DatagramProtocol):
    def __init__(self, owner):
        self.owner = owner

    def datagramReceived(self, data, addr):
        if self.owner.silent:
            return
        self.owner.udp_queries += 1
        packed = self.owner.answer(data, 512)
        if packed:
            self.transport.write(packed, addr)


class _Tcp(basic.Int16StringReceiver):
    def __init__(self, owner):
        self.owner = owner

    def stringReceived(self, data):
        if self.owner.silent:
            return
        self.owner.tcp_queries += 1
        packed = self.owner.answer(data, None)
        if packed:
            self.sendString(packed)


class _TcpFactory(protocol.Factory):
    def __init__(self, owner):
        self.owner = owner

    def buildProtocol(self, addr):
        return _Tcp(self.owner)


@pytest.fixture
def reactor():
    from twisted.internet import reactor as global_reactor
    return global_reactor


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_large_answer_is_fetched_over_tcp(reactor):
    server = _TestDnsServer(reactor, {"big.mesh.test": ["x" * 700, "y" * 300],
                                      "small.mesh.test": ["s"]})
    try:
        client = DnsClient(reactor, timeout=2.0)
        answer = await client.query_txt(server.server, "big.mesh.test")
        assert set(answer.values) == {"x" * 700, "y" * 300}
        assert (server.udp_queries, server.tcp_queries) == (1, 1)
        assert (await client.query_txt(server.server, "small.mesh.test")).values == ("s",)
        assert (await client.query_txt(server.server, "none.mesh.test")).rcode == 3
        assert server.tcp_queries == 1
    finally:
        await server.stop()


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_query_to_a_closed_port_fails_quickly(reactor):
    # Port 9 (discard) is below the ephemeral range, so no socket of ours can hold it.
    client = DnsClient(reactor, timeout=2.0)
    started = reactor.seconds()
    with pytest.raises(QueryFailed):
        await client.query_txt(Server("127.0.0.1", 9), "x.mesh.test")
    assert reactor.seconds() - started < 2.0


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_the_pool_survives_a_resolver_that_stops_answering_and_takes_it_back(reactor):
    data = {"n.mesh.test": ["value"]}
    servers = [_TestDnsServer(reactor, data) for _ in range(3)]
    try:
        client = DnsClient(reactor, timeout=0.3)
        pool = ResolverPool([s.server for s in servers], client, reactor, backoff=0.5)
        assert await pool.read("n.mesh.test") == ["value"]
        assert servers[0].udp_queries == 1
        servers[0].silent = True
        started = reactor.seconds()
        assert await pool.read("n.mesh.test") == ["value"]      # one timeout, then server 2
        assert reactor.seconds() - started >= 0.3
        assert pool.health[0].failures == 1 and servers[1].udp_queries == 1
        started = reactor.seconds()
        for _ in range(5):                                      # no more timeouts meanwhile
            assert await pool.read("n.mesh.test") == ["value"]
        assert reactor.seconds() - started < 0.3
        assert servers[1].udp_queries == 6
        servers[0].silent = False
        await task.deferLater(reactor, 0.55, lambda: None)      # its cool-down ends
        assert await pool.read("n.mesh.test") == ["value"]
        assert servers[0].udp_queries == 2
        assert pool.health[0].failures == 0 and pool.health[0].answers == 2
    finally:
        for server in servers:
            await server.stop()


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_the_union_reader_does_not_wait_for_a_dead_node(reactor):
    servers = [_TestDnsServer(reactor, {"n.mesh.test": [f"v{i}"]}) for i in range(3)]
    servers[2].silent = True
    try:
        client = DnsClient(reactor, timeout=2.0)
        reader = UnionReader([s.server for s in servers], client, reactor)
        started = reactor.seconds()
        assert sorted(await reader.read("n.mesh.test")) == ["v0", "v1"]
        assert reactor.seconds() - started < 1.0
    finally:
        for server in servers:
            await server.stop()
