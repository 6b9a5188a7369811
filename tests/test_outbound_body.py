"""Outbound request pieces against canned HTTP answers on loopback: the response cap (declared
and streamed), close-delimited bodies and bodies cut short."""

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from dmfdns.outbound.body import BodyCutShort, BodyTooLarge, BytesBody, read_capped

pytestmark = pytest.mark.integration


class _Canned(protocol.Protocol):
    """Answers the request (every test sends the body ``ping``) with the factory's raw bytes,
    then closes."""

    def dataReceived(self, data):
        self.factory.seen.append(data)
        if b"".join(self.factory.seen).endswith(b"\r\n\r\nping"):
            self.transport.write(self.factory.answer)
            self.transport.loseConnection()


@pytest.fixture
def reactor():
    from twisted.internet import reactor as global_reactor
    return global_reactor


@pytest.fixture
def serve(reactor):
    ports = []

    def start(answer: bytes) -> str:
        factory = protocol.Factory.forProtocol(_Canned)
        factory.answer, factory.seen = answer, []
        ports.append(reactor.listenTCP(0, factory, interface="127.0.0.1"))
        start.seen = factory.seen
        return f"http://127.0.0.1:{ports[-1].getHost().port}/"
    yield start
    for port in ports:
        port.stopListening()


async def _get(reactor, url, limit, **kwargs):
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = await agent.request(b"POST", url.encode(), Headers(), BytesBody(b"ping"))
    return await read_capped(response, limit, **kwargs)


@pytest_twisted.ensureDeferred
async def test_a_body_within_the_cap_is_read_whole(reactor, serve):
    url = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert await _get(reactor, url, 5) == b"hello"


@pytest_twisted.ensureDeferred
async def test_the_request_body_is_sent(reactor, serve):
    url = serve(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = await agent.request(b"POST", url.encode(), Headers(), BytesBody(b"ping"))
    assert response.code == 204
    assert await read_capped(response, 10) == b""
    request = b"".join(serve.seen)
    assert b"Content-Length: 4\r\n" in request and request.endswith(b"\r\n\r\nping")


@pytest_twisted.ensureDeferred
async def test_a_declared_length_over_the_cap_is_refused_unread(reactor, serve):
    url = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
                + b"x" * 100)
    with pytest.raises(BodyTooLarge, match="declares 100 bytes"):
        await _get(reactor, url, 99)


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_growing_past_the_cap_is_cut_off(reactor, serve):
    chunks = b"".join(b"10\r\n" + b"y" * 16 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    url = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    with pytest.raises(BodyTooLarge, match="larger than 64 bytes"):
        await _get(reactor, url, 64)


@pytest_twisted.ensureDeferred
async def test_a_close_delimited_body_counts_only_when_asked(reactor, serve):
    answer = b"HTTP/1.0 200 OK\r\n\r\nuntil close"
    assert await _get(reactor, serve(answer), 64, close_delimited=True) == b"until close"
    with pytest.raises(BodyCutShort):
        await _get(reactor, serve(answer), 64)


@pytest_twisted.ensureDeferred
async def test_a_body_shorter_than_declared_is_cut_short(reactor, serve):
    url = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly this")
    with pytest.raises(BodyCutShort, match="cut short"):
        await _get(reactor, url, 64, close_delimited=True)


def test_the_body_producer_writes_its_bytes_at_once():
    written = []

    class Consumer:
        write = written.append
    done = BytesBody(b"abc").startProducing(Consumer())
    assert written == [b"abc"] and isinstance(done, defer.Deferred) and done.called
