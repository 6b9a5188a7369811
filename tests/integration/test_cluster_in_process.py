"""Three nodes from the real ``make_service`` in one process on the one global reactor, over
real loopback sockets: the default peer transport (real HTTP) carries their sync, a record
published over HTTP on one node is answered over DNS by the others."""

import pytest
import pytest_twisted
from dnslib import QTYPE, DNSRecord
from twisted.internet import reactor, task, threads
from twisted.web import resource, server

from node_support import TIMEOUT, dns_port, free_port, http_call, node_config, start_node

pytestmark = pytest.mark.integration
TOKEN = "in-process-sync"
CONVERGE = 20.0


def txt(port: int, name: str) -> list[str]:
    reply = DNSRecord.parse(DNSRecord.question(name, "TXT").send(
        "127.0.0.1", port, timeout=TIMEOUT))
    return [b"".join(rr.rdata.data).decode() for rr in reply.rr if rr.rtype == QTYPE.TXT]


@pytest.fixture
def three_nodes(tmp_path):
    ports = {n: free_port() for n in ("n1", "n2", "n3")}
    nodes = {}
    for node_id, port in ports.items():
        peers = [f"http://127.0.0.1:{p}" for n, p in ports.items() if n != node_id]
        config = node_config(tmp_path, tmp_path / node_id, node_id=node_id,
                             http=f"127.0.0.1:{port}",
                             cluster={"sync_token": TOKEN, "peers": peers,
                                      "sync_interval": 0.2, "peer_timeout": 2.0})
        nodes[node_id] = start_node(config)
    yield nodes, ports
    for node in nodes.values():
        pytest_twisted.blockon(node.stopService())


@pytest_twisted.inlineCallbacks
def test_three_real_nodes_in_one_reactor_converge_over_real_http(three_nodes):
    nodes, ports = three_nodes
    for node_id, name in (("n1", "one.mesh.test"), ("n2", "two.mesh.test")):
        status, _, _ = yield threads.deferToThread(
            http_call, ports[node_id], "POST", f"/v1/records/{name}",
            {"value": f"from-{node_id}", "ttl": 600})
        assert status == 201
    expected = {("one.mesh.test", "from-n1"), ("two.mesh.test", "from-n2")}
    deadline = reactor.seconds() + CONVERGE
    while reactor.seconds() < deadline:
        if all(_holds(node, expected) for node in nodes.values()):
            break
        yield task.deferLater(reactor, 0.2, lambda: None)
    assert all(_holds(node, expected) for node in nodes.values())
    answers = yield threads.deferToThread(txt, dns_port(nodes["n3"]), "one.mesh.test")
    assert answers == ["from-n1"]
    for node in nodes.values():
        assert sum(state.pulled for state in node.cluster.anti_entropy.states.values()) >= 1


def _holds(node, pairs) -> bool:
    now = node.reactor.seconds()
    return all(value in [v.value for v in node.store.get(name, now)] for name, value in pairs)


class SlowPeer(resource.Resource):
    """A real HTTP peer on loopback that answers every call, but only after ``delay``."""

    isLeaf = True

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.asked = 0

    def render(self, request):
        self.asked += 1
        gone = []                      # the caller gave up (its deadline) and hung up
        request.notifyFinish().addErrback(gone.append)

        def answer():
            if not gone:
                request.setHeader(b"content-type", b"application/json")
                request.write(b'{"records": [], "has_more": false, "next_cursor": "0::"}')
                request.finish()
        reactor.callLater(self.delay, answer)
        return server.NOT_DONE_YET


@pytest_twisted.inlineCallbacks
def test_a_peer_slow_to_answer_is_labelled_timeout_not_unreachable(tmp_path):
    slow = SlowPeer(delay=1.0)
    port = reactor.listenTCP(0, server.Site(slow), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    node = start_node(node_config(tmp_path, tmp_path / "n", node_id="n",
                                  cluster={"sync_token": TOKEN, "peers": [url],
                                           "sync_interval": 0.2, "peer_timeout": 0.3}))
    try:
        deadline = reactor.seconds() + CONVERGE
        while reactor.seconds() < deadline and not node.cluster.anti_entropy.states[
                url].errors:
            yield task.deferLater(reactor, 0.1, lambda: None)
        state = node.cluster.anti_entropy.states[url]
        assert slow.asked >= 1 and state.errors.get("timeout", 0) >= 1, state.errors
        assert "unreachable" not in state.errors
        assert "no answer within 0.3 s" in state.last_error
        assert node.metrics.registry.get_sample_value(
            "dmfdns_sync_errors_total", {"peer": url, "reason": "timeout"}) >= 1
    finally:
        yield node.stopService()
        yield port.stopListening()
