"""The private Twisted API behind ``dmfdns.twisted_private``: each name still exists and still
does what dmfdns relies on. When a Twisted release moves one, these fail naming it (the
behaviour itself is also covered by test_http_channel and test_outbound_client)."""

import pytest
import pytest_twisted
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.web import client, http, resource, server

from dmfdns import twisted_private
from dmfdns.outbound.client import HttpClient

pytestmark = pytest.mark.integration


def test_the_pool_still_builds_its_connections_with_the_private_factory():
    assert hasattr(client, "_HTTP11ClientFactory"), \
        "twisted.web.client._HTTP11ClientFactory is gone: update dmfdns.twisted_private"
    assert client.HTTPConnectionPool._factory is client._HTTP11ClientFactory, \
        "HTTPConnectionPool._factory no longer names the factory: update twisted_private"


def test_the_bad_request_hook_is_still_called_by_twisted_web():
    hook = twisted_private.BAD_REQUEST_HOOK
    assert callable(getattr(http.HTTPChannel, hook, None)), \
        f"HTTPChannel.{hook} is gone: malformed requests would get Twisted's bare 400"
    calls = []

    class Channel(twisted_private.BadRequestHook):
        def bad_request(self):
            calls.append(True)
            self.transport.loseConnection()
    channel = Channel()
    channel.requestFactory = http.Request
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    assert calls == [True], f"twisted.web no longer calls HTTPChannel.{hook}"


class _Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello"


@pytest_twisted.ensureDeferred
async def test_outbound_connections_log_no_factory_lines():
    from twisted.internet import reactor
    port = reactor.listenTCP(0, server.Site(_Hello()), interface="127.0.0.1")
    lines = []

    def observe(event):
        lines.append(event.get("log_format") or "")
    globalLogPublisher.addObserver(observe)
    http_client = HttpClient(reactor, timeout=5)
    try:
        response = await http_client.request(
            "GET", f"http://127.0.0.1:{port.getHost().port}/")
        assert response.body == b"hello"
    finally:
        globalLogPublisher.removeObserver(observe)
        await http_client.close()
        await port.stopListening()
    assert not [line for line in lines if "factory" in line.lower()], lines
