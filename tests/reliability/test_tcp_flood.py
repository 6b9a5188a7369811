"""DNS over TCP under an idle-connection flood: one client holding 150 idle connections must
not lock the others out (RFC 7766 §10). Without per-client caps and eviction, 100 idle
connections from one address took every slot and other clients got 2 answers in 50.

The flooder binds 127.0.0.2 and the legitimate client 127.0.0.1, two client addresses on
loopback. Each legitimate query opens a new connection, as a stub resolver falling back from
a truncated UDP answer does.
"""

import shutil

import pytest
import pytest_twisted
from twisted.internet import threads

from attacks import flood_and_probe, start_knot
from conftest import scaled

from node_support import dns_port, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

FLOOD = scaled(150, 1000)
LEGITIMATE = scaled(50, 60)


@pytest_twisted.inlineCallbacks
def test_one_client_with_150_idle_connections_is_held_to_its_own_cap(node_with, figures):
    node = node_with("dns", max_tcp_connections=100, max_tcp_connections_per_client=10)
    answered, held = yield threads.deferToThread(flood_and_probe, dns_port(node), FLOOD,
                                                 LEGITIMATE, 0.2)
    figures(flood=FLOOD, answered=answered, probes=LEGITIMATE, flood_held=held)
    assert answered == LEGITIMATE
    assert held <= 10


@pytest_twisted.inlineCallbacks
def test_a_full_listener_evicts_idle_connections_for_new_clients(node_with, figures):
    """No per-client cap at all: the flooder fills the listener, and the legitimate client's
    connections still get in by closing the flooder's quiet ones (once past their grace)."""
    node = node_with("dns", max_tcp_connections=100, max_tcp_connections_per_client=100_000)
    answered, held = yield threads.deferToThread(flood_and_probe, dns_port(node), FLOOD,
                                                 LEGITIMATE, 1.2)
    figures(flood=FLOOD, answered=answered, probes=LEGITIMATE, flood_held=held)
    assert answered == LEGITIMATE
    assert held < 100


ZONE = """$ORIGIN mesh.test.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 604800 60
@ IN NS ns1
ns1 IN A 127.0.0.1
"""


@pytest.mark.skipif(shutil.which("knotd") is None, reason="the Knot reference needs knotd")
def test_knot_reference_under_the_same_idle_flood(tmp_path, figures):
    """Knot 3.2 with its defaults (tcp-max-clients half the fd limit, 10 s idle timeout)."""
    (tmp_path / "mesh.test.zone").write_text(ZONE)
    port = free_port()
    knot = start_knot(tmp_path, tmp_path / "mesh.test.zone", port)
    try:
        answered, held = flood_and_probe(port, FLOOD, LEGITIMATE, 1.2)
        figures(server="knot", flood=FLOOD, answered=answered, probes=LEGITIMATE,
                flood_held=held)
        assert answered == LEGITIMATE
    finally:
        knot.terminate()
        knot.wait(20)
