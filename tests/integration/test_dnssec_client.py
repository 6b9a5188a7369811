"""The dmfdns client behind a validating Unbound (docs/dns-behaviour.md, "DNSSEC"): a
signed node in this process, Unbound anchored to the node's DS, and two users whose only
DNS is that resolver (their node endpoints have no DNS address). Identities, prekeys,
mailbox slots (and their denials while empty) and chunks all pass through validation;
a message goes across, and the names the client read come back with AD.
"""

import pathlib
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from dmfdns.client import identity_ops, network, receive, send
from dmfdns.client.state import NodeEndpoint
from dmfdns.config import parse_config
from dmfdns.node_dnssec import load_keys, presentation

from client_fakes import make_user
import unbound_support
from node_support import dns_port, free_port, http_port, start_node

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

ROOT = pathlib.Path(__file__).resolve().parents[2]
ZONE_FILE = ROOT / "zones" / "mesh.test.zone"


def ask(port: int, name: str, rtype: str = "TXT", timeout: float = 2.0):
    """A DO query to ``port``, over TCP when the UDP answer is truncated."""
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    return dns.query.udp_with_fallback(query, "127.0.0.1", port=port, timeout=timeout)[0]


def wait_for(port: int, process) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "unbound exited"
        try:
            ask(port, "mesh.test", "SOA", timeout=0.5)
            return
        except (OSError, dns.exception.Timeout):
            time.sleep(0.1)
    raise AssertionError("unbound did not answer")


@pytest.fixture
def signed_node(tmp_path):
    config = parse_config(f"""[node]
data_dir = "{tmp_path / 'data'}"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:0"]
[http]
listen = ["127.0.0.1:0"]
[[zones]]
file = "{ZONE_FILE}"
dnssec = true
""", base=tmp_path, cwd=tmp_path)
    node = start_node(config)
    yield node, config
    pytest_twisted.blockon(node.stopService())


@pytest.fixture
def validating_unbound(tmp_path, signed_node):
    node, config = signed_node
    keys = load_keys(config.node.data_dir, "mesh.test")
    ds = presentation("mesh.test", keys, 3600)[0]
    port = free_port()
    conf = unbound_support.write_config(
        tmp_path / "unbound", port, modules="validator iterator",
        server=("qname-minimisation: yes",
                f'trust-anchor: "mesh.test. DS {ds.split(" IN DS ")[1]}"'),
        stub=['name: "mesh.test"', f"stub-addr: 127.0.0.1@{dns_port(node)}"])
    process = unbound_support.start(conf)
    yield port, process
    unbound_support.stop(process)


def _now() -> int:
    return int(reactor.seconds())


@pytest_twisted.ensureDeferred
async def test_two_clients_behind_a_validating_unbound_exchange_a_message(
        signed_node, validating_unbound):
    node, _ = signed_node
    port, process = validating_unbound
    await threads.deferToThread(wait_for, port, process)
    endpoint = [NodeEndpoint(f"http://127.0.0.1:{http_port(node)}", "", "n1")]
    resolver = [f"127.0.0.1:{port}"]
    alice = make_user("alice", nodes=endpoint, resolvers=resolver)
    bob = make_user("bob", nodes=endpoint, resolvers=resolver)
    nets = {user[0].username: network.build(reactor, user[0], dns_timeout=2.0,
                                            http_timeout=5.0) for user in (alice, bob)}
    try:
        for user in (alice, bob):
            await identity_ops.publish_identity(nets[user[0].username], user[0],
                                                user[1].keys, _now())
            await nets[user[0].username].writer.drain()
        for me, other in ((alice, "bob@mesh.test"), (bob, "alice@mesh.test")):
            found = await identity_ops.find_identity(nets[me[0].username], other, _now())
            assert found is not None, f"{other} not found through the validating resolver"
            identity_ops.pin(me[1], found, _now())
        to_bob = alice[1].contact("bob@mesh.test")
        body = ("signed and validated " * 200).encode()[:3000]     # two chunks or more
        [sent] = await send.send_text(nets["alice"], alice[0], alice[1], to_bob, body,
                                      _now())
        await nets["alice"].writer.drain()
        report = await receive.receive(nets["bob"], bob[0], bob[1], _now())
        assert [m.body for m in report.delivered] == [body]
        assert report.delivered[0].sender == "alice@mesh.test"
    finally:
        for net in nets.values():
            await net.finish()
    manifest = await threads.deferToThread(ask, port, sent.manifest_owner)
    assert manifest.rcode() == dns.rcode.NOERROR and manifest.flags & dns.flags.AD
    assert manifest.answer
