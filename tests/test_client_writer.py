"""The HTTP writer against small twisted.web record APIs on loopback: quorum, errors,
deadlines, response caps and draining."""

import json
from urllib.parse import unquote

import pytest
import pytest_twisted
from twisted.web import resource, server

from dmfdns.client.writer import FanoutWriter, HttpNode, WriteError, quorum

pytestmark = pytest.mark.integration


class FakeRecordApi(resource.Resource):
    """``/v1/records/{name}`` with a switchable failure mode."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.records, self.mode, self.requests, self.pending = {}, "ok", [], []

    def render(self, request):
        path = request.path.decode()
        name = unquote(path[len("/v1/records/"):])
        body = json.loads(request.content.read() or b"{}")
        self.requests.append((request.method.decode(), name, body,
                              request.getHeader("authorization")))
        if self.mode == "hang":
            self.pending.append(request)
            return server.NOT_DONE_YET
        if self.mode == "error":
            request.setResponseCode(400)
            return json.dumps({"error": "value exceeds cap of 2048 bytes"}).encode()
        if self.mode == "huge":
            request.setResponseCode(201)
            return b"x" * 200_000
        if request.method == b"POST":
            self.records.setdefault(name, set()).add(body["value"])
            request.setResponseCode(201)
            return b'{"ok":true}'
        values = self.records.get(name, set())
        if body.get("value") in values:
            values.discard(body["value"])
            request.setResponseCode(204)
            return b""
        request.setResponseCode(404)
        return b""


@pytest.fixture
def reactor():
    from twisted.internet import reactor as global_reactor
    return global_reactor


@pytest.fixture
def apis(reactor):
    made = []

    def start(count):
        for _ in range(count):
            api = FakeRecordApi()
            port = reactor.listenTCP(0, server.Site(api), interface="127.0.0.1")
            made.append((api, port))
        return [(api, f"http://127.0.0.1:{port.getHost().port}") for api, port in made[-count:]]
    yield start
    for api, port in made:
        for request in api.pending:
            if not request.finished and not request._disconnected:
                request.finish()
        port.stopListening()


def test_quorum_is_a_strict_majority():
    assert [quorum(n) for n in range(1, 7)] == [1, 2, 2, 3, 3, 4]


@pytest_twisted.ensureDeferred
async def test_a_write_reaches_every_node_with_the_token(reactor, apis):
    started = apis(3)
    nodes = [HttpNode(reactor, url, token="t0k") for _, url in started]
    writer = FanoutWriter(nodes)
    assert await writer.publish("Chunk-0001-abc.mesh.test", "v=dmp1;x", 300) == 2
    await writer.drain()
    for api, _ in started:
        assert api.requests == [("POST", "Chunk-0001-abc.mesh.test",
                                 {"value": "v=dmp1;x", "ttl": 300}, "Bearer t0k")]
    await writer.delete("Chunk-0001-abc.mesh.test", "v=dmp1;x")
    await writer.drain()
    assert all(api.records["Chunk-0001-abc.mesh.test"] == set() for api, _ in started)
    await writer.close()


@pytest_twisted.ensureDeferred
async def test_a_refusing_minority_does_not_fail_the_write(reactor, apis):
    started = apis(3)
    started[0][0].mode = "error"
    writer = FanoutWriter([HttpNode(reactor, url) for _, url in started])
    await writer.publish("a.mesh.test", "v", 60)
    await writer.drain()
    assert writer.nodes[0].health.failures == 1
    assert "value exceeds cap" in writer.nodes[0].health.last_error
    await writer.close()


@pytest_twisted.ensureDeferred
async def test_a_refusing_majority_fails_with_the_nodes_reasons(reactor, apis):
    started = apis(3)
    started[0][0].mode = started[1][0].mode = "error"
    writer = FanoutWriter([HttpNode(reactor, url) for _, url in started])
    with pytest.raises(WriteError, match=r"only [01] of 3 nodes .*HTTP 400: value exceeds cap"):
        await writer.publish("a.mesh.test", "v", 60)
    await writer.drain()
    await writer.close()


@pytest_twisted.ensureDeferred
async def test_a_dead_node_is_an_error_not_a_hang(reactor, apis):
    started = apis(2)
    port = reactor.listenTCP(0, server.Site(FakeRecordApi()), interface="127.0.0.1")
    dead = f"http://127.0.0.1:{port.getHost().port}"
    await port.stopListening()
    writer = FanoutWriter([HttpNode(reactor, url) for _, url in started]
                          + [HttpNode(reactor, dead)])
    await writer.publish("a.mesh.test", "v", 60)
    await writer.drain()
    assert writer.nodes[2].health.failures == 1
    await writer.close()


@pytest_twisted.ensureDeferred
async def test_a_hanging_node_hits_the_deadline_and_drain_waits_for_it(reactor, apis):
    started = apis(3)
    started[2][0].mode = "hang"
    writer = FanoutWriter([HttpNode(reactor, url, timeout=0.3) for _, url in started])
    begun = reactor.seconds()
    await writer.publish("a.mesh.test", "v", 60)
    assert reactor.seconds() - begun < 0.3          # the quorum did not wait for it
    await writer.drain()
    assert reactor.seconds() - begun >= 0.3
    assert "no answer within 0.3 s" in writer.nodes[2].health.last_error
    await writer.close()


@pytest_twisted.ensureDeferred
async def test_an_oversized_response_is_cut_off(reactor, apis):
    [(api, url)] = apis(1)
    api.mode = "huge"
    node = HttpNode(reactor, url, max_response=1024)
    with pytest.raises(WriteError, match="larger than 1024 bytes"):
        await node.publish("a.mesh.test", "v", 60)
    await node.close()


@pytest_twisted.ensureDeferred
async def test_deleting_what_is_not_there_is_fine(reactor, apis):
    [(api, url)] = apis(1)
    node = HttpNode(reactor, url)
    assert await node.delete("a.mesh.test", "never") == 404
    await node.close()
