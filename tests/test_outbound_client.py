"""The one outbound HTTP client against real loopback servers: one deadline over the whole
exchange, the cause label of each failure, the response cap, HTTP/1.0 peers, status checks."""

import pytest
import pytest_twisted
from twisted.internet import protocol

from dmfdns.outbound import errors
from dmfdns.outbound.client import HttpClient, HttpResponse
from dmfdns.outbound.errors import OutboundError, check_status

pytestmark = pytest.mark.integration


@pytest.fixture
def reactor():
    from twisted.internet import reactor as global_reactor
    return global_reactor


class _Scripted(protocol.Protocol):
    """Answers each request with the factory's next raw answer (None: say nothing)."""

    def dataReceived(self, data):
        self.factory.requests.append(data)
        if b"\r\n\r\n" not in data:
            return
        answer = self.factory.answers.pop(0) if self.factory.answers else None
        if answer is not None:
            self.transport.write(answer)
            if b"HTTP/1.0" in answer[:8]:
                self.transport.loseConnection()


@pytest.fixture
def serve(reactor):
    ports = []

    def start(*answers) -> str:
        factory = protocol.Factory.forProtocol(_Scripted)
        factory.answers, factory.requests = list(answers), []
        ports.append(reactor.listenTCP(0, factory, interface="127.0.0.1"))
        start.factory = factory
        return f"http://127.0.0.1:{ports[-1].getHost().port}"
    yield start
    for port in ports:
        port.stopListening()


async def _cause(call) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        await call
    assert caught.value.cause in errors.CAUSES
    return caught.value


@pytest_twisted.ensureDeferred
async def test_an_answer_comes_back_with_status_headers_and_body(reactor, serve):
    url = serve(b"HTTP/1.1 201 Created\r\nX-Thing: a\r\nContent-Length: 2\r\n\r\nok")
    client = HttpClient(reactor, timeout=5)
    response = await client.request("POST", url + "/x", {"A": "b"}, b"body")
    assert response == HttpResponse(201, {"x-thing": "a"}, b"ok")
    assert b"POST /x HTTP/1.1" in serve.factory.requests[0]
    assert client.bytes_sent == 4 and client.bytes_received == 2
    await client.close()


@pytest_twisted.ensureDeferred
async def test_a_silent_server_is_a_timeout_at_the_deadline(reactor, serve):
    url = serve(None)
    client = HttpClient(reactor, timeout=0.3)
    begun = reactor.seconds()
    error = await _cause(client.request("GET", url + "/"))
    assert error.cause == errors.TIMEOUT and "no answer within 0.3 s" in str(error)
    assert 0.3 <= reactor.seconds() - begun < 2
    await client.close()


@pytest_twisted.ensureDeferred
async def test_a_dribbled_body_is_cut_by_the_same_deadline(reactor, serve):
    url = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
    client = HttpClient(reactor, timeout=0.3)
    assert (await _cause(client.request("GET", url + "/"))).cause == errors.TIMEOUT
    await client.close()


@pytest_twisted.ensureDeferred
async def test_a_closed_port_is_refused(reactor):
    port = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    await port.stopListening()
    client = HttpClient(reactor, timeout=2)
    assert (await _cause(client.request("GET", url + "/"))).cause == errors.REFUSED


@pytest_twisted.ensureDeferred
async def test_an_answer_over_the_cap_is_too_large(reactor, serve):
    url = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
    client = HttpClient(reactor, timeout=2, max_bytes=1024)
    error = await _cause(client.request("GET", url + "/"))
    assert error.cause == errors.TOO_LARGE and "larger than 1024 bytes" in str(error)
    await client.close()


@pytest_twisted.ensureDeferred
async def test_an_http_1_0_peer_gets_a_fresh_connection_for_each_post(reactor, serve):
    answer = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    url = serve(answer, answer, answer)
    client = HttpClient(reactor, timeout=2)
    for _ in range(3):
        assert (await client.request("POST", url + "/p", {}, b"x")).body == b"ok"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_a_url_that_is_not_http_is_refused_before_anything_is_sent(reactor):
    client = HttpClient(reactor, timeout=2)
    error = await _cause(client.request("GET", "ftp://127.0.0.1/"))
    assert error.cause == errors.UNREACHABLE and "not an http(s) URL" in str(error)


@pytest.mark.parametrize("status, cause", [(401, errors.FORBIDDEN), (403, errors.FORBIDDEN),
                                           (500, errors.STATUS), (404, errors.STATUS)])
def test_check_status_names_the_cause_and_the_servers_error(status, cause):
    response = HttpResponse(status, {}, b'{"error": "nope"}')
    with pytest.raises(OutboundError) as caught:
        check_status(response, ok=(200,), what="/v1/x")
    assert caught.value.cause == cause
    assert str(caught.value) == f"/v1/x: HTTP {status}: nope"
    check_status(HttpResponse(204), ok=(200, 204))
