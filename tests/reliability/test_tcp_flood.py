"""DNS over TCP under an idle-connection flood: one client holding 150 idle connections must
not lock the others out (RFC 7766 §10). Without per-client caps and eviction, 100 idle
connections from one address took every slot and other clients got 2 answers in 50.

The flooder binds 127.0.0.2 and the legitimate client 127.0.0.1, two client addresses on
loopback. Each legitimate query opens a new connection, as a stub resolver falling back from
a truncated UDP answer does.
"""

import dataclasses
import socket
import struct
import time

import pytest
import pytest_twisted
from dnslib import DNSRecord
from twisted.internet import threads

from node_support import dns_port, node_config, start_node

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

FLOOD = 150
LEGITIMATE = 50


def flood(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        held.append(sock)
    return held


def still_open(sockets) -> int:
    """How many of the flooder's connections the server has not closed."""
    alive = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            alive += sock.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def ask_over_new_connection(port: int, qid: int) -> bool:
    query = DNSRecord.question("mesh.test", "SOA")
    query.header.id = qid
    wire = query.pack()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            length = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
            reply = DNSRecord.parse(sock.recv(length, socket.MSG_WAITALL))
        return reply.header.id == qid and len(reply.rr) == 1
    except (OSError, struct.error):
        return False


def run_flood(port: int, wait: float) -> tuple[int, int]:
    held = flood(port, FLOOD)
    try:
        time.sleep(wait)
        answered = sum(ask_over_new_connection(port, qid) for qid in range(LEGITIMATE))
        return answered, still_open(held)
    finally:
        for sock in held:
            sock.close()


@pytest.fixture
def node_with(tmp_path):
    """``node_with(**dns_settings)`` → a started node on loopback; stopped at the end."""
    nodes = []

    def starter(**dns):
        config = node_config(tmp_path, tmp_path / f"data{len(nodes)}")
        config = dataclasses.replace(config, dns=dataclasses.replace(config.dns, **dns))
        node = start_node(config)
        nodes.append(node)
        return node
    yield starter
    for node in nodes:
        pytest_twisted.blockon(node.stopService())


@pytest_twisted.inlineCallbacks
def test_one_client_with_150_idle_connections_is_held_to_its_own_cap(node_with):
    node = node_with(max_tcp_connections=100, max_tcp_connections_per_client=10)
    answered, held = yield threads.deferToThread(run_flood, dns_port(node), 0.2)
    assert answered == LEGITIMATE
    assert held <= 10


@pytest_twisted.inlineCallbacks
def test_a_full_listener_evicts_idle_connections_for_new_clients(node_with):
    """No per-client cap at all: the flooder fills the listener, and the legitimate client's
    connections still get in by closing the flooder's quiet ones (once past their grace)."""
    node = node_with(max_tcp_connections=100, max_tcp_connections_per_client=100_000)
    answered, held = yield threads.deferToThread(run_flood, dns_port(node), 1.2)
    assert answered == LEGITIMATE
    assert held < 100
