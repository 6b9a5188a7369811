"""A real resolver in front of a real node: Unbound, QNAME minimisation on, stub zone
``mesh.test`` pointing at the node (docs/decisions.md §4.2, §8.7).

The point: a minimising resolver asks for the mailbox's parent ``mb-<hash>.<zone>`` (an
empty non-terminal) before the slot. If the node answered NXDOMAIN there, RFC 8020 would
let the resolver answer NXDOMAIN for every slot below it; the node must answer
NOERROR/NODATA, and the slot must then resolve.
"""

import dataclasses
import json
import pathlib
import socket
import subprocess
import time

import pytest
import pytest_twisted
from dnslib import DNSRecord, QTYPE
from twisted.internet import reactor, threads

from dmfdns.config import ListenAddress, load_config
from dmfdns.node import make_service
from dmfdns.proto import owners

import unbound_support
from node_support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

ZONE = "mesh.test"
VECTORS = pathlib.Path(__file__).resolve().parent.parent / "vectors"


@pytest.fixture
def node(tmp_path):
    base = load_config(None, cwd=tmp_path)
    config = dataclasses.replace(
        base, node=dataclasses.replace(base.node, data_dir=tmp_path / "data"),
        store=dataclasses.replace(base.store, map_size=64 * 2**20),
        dns=dataclasses.replace(base.dns, listen=(ListenAddress("127.0.0.1", 0),)),
        http=dataclasses.replace(base.http, listen=()))
    started = make_service(config, reactor)
    started.startService()
    yield started
    pytest_twisted.blockon(started.stopService())


class SeenQueries:
    """Wraps the node's responder to record ``(qname, qtype, rcode, answers)`` of every
    query it answers: the node-side view of what the resolver asked."""

    def __init__(self, responder):
        self.seen = []
        self._respond = responder.respond
        responder.respond = self.respond

    def respond(self, query, **kwargs):
        response = self._respond(query, **kwargs)
        if response is not None:
            reply = DNSRecord.parse(response)
            self.seen.append((str(reply.q.qname).rstrip(".").lower(),
                              QTYPE.get(reply.q.qtype), reply.header.rcode, len(reply.rr)))
        return response




@pytest.fixture
def unbound(tmp_path, node):
    work, port = tmp_path / "unbound", free_port()
    conf = unbound_support.write_config(
        work, port, server=("verbosity: 2", "qname-minimisation: yes",
                            "qname-minimisation-strict: no", "harden-below-nxdomain: yes",
                            "outgoing-range: 64", "num-queries-per-thread: 32"),
        stub=[f'name: "{ZONE}"', f"stub-addr: 127.0.0.1@{node.dns_addresses('udp')[0].port}"])
    check = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    process = unbound_support.start(conf, stderr=subprocess.PIPE)
    yield port, process, work
    unbound_support.stop(process)
    process.stderr.close()


def resolve(port: int, name: str, qtype: str = "TXT"):
    """One recursive query to Unbound (blocking; run in a thread). The socket is connected
    so a port nobody listens on yet fails at once (ICMP port unreachable)."""
    record = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.connect(("127.0.0.1", port))
        sock.send(record.pack())
        return DNSRecord.parse(sock.recv(65535))


def wait_until_serving(port: int, process, deadline_s: float = 15.0):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("unbound exited: " + process.stderr.read().decode())
        try:
            return resolve(port, ZONE, "SOA")
        except OSError:   # refused until Unbound has bound its port
            time.sleep(0.05)
    raise AssertionError("unbound did not answer")


def txt_values(reply) -> list[bytes]:
    return [b"".join(rr.rdata.data) for rr in reply.rr if rr.rtype == QTYPE.TXT]


@pytest_twisted.inlineCallbacks
def test_slot_identity_and_nonexistent_names_through_unbound(node, unbound):
    port, process, work = unbound
    seen = SeenQueries(node.responder)
    now = reactor.seconds()
    recipient = bytes(range(32))
    slot = owners.slot(3, recipient, ZONE)
    mailbox = slot.split(".", 1)[1]
    identity = json.loads((VECTORS / "identity_record.json").read_text())[0]
    identity_name = owners.identity_hashed(identity["inputs"]["username"], ZONE)
    identity_wire = bytes.fromhex(identity["expected_wire_hex"]).decode("ascii")
    node.store.put(slot, "v=dmp1;t=manifest;slot-three", expiry=now + 600, now=now)
    node.store.put(identity_name, identity_wire, expiry=now + 600, now=now)

    soa = yield threads.deferToThread(wait_until_serving, port, process)
    assert soa.header.rcode == 0 and soa.rr[0].rtype == QTYPE.SOA

    slot_reply = yield threads.deferToThread(resolve, port, slot)
    identity_reply = yield threads.deferToThread(resolve, port, identity_name)
    missing_reply = yield threads.deferToThread(resolve, port, f"nobody-here.{ZONE}")

    assert slot_reply.header.rcode == 0
    assert txt_values(slot_reply) == [b"v=dmp1;t=manifest;slot-three"]
    assert identity_reply.header.rcode == 0
    assert txt_values(identity_reply) == [identity_wire.encode("ascii")]
    assert missing_reply.header.rcode == 3   # NXDOMAIN

    # Unbound minimised: it asked the mailbox name (an empty non-terminal) before the
    # slot and the node answered NOERROR with no records (NODATA), not NXDOMAIN.
    names = [name for name, _, _, _ in seen.seen]
    assert mailbox in names and slot in names
    assert names.index(mailbox) < names.index(slot)
    ent_answers = {(rcode, answers) for name, _, rcode, answers in seen.seen
                   if name == mailbox}
    assert ent_answers == {(0, 0)}
    slot_answers = [(qtype, rcode, answers) for name, qtype, rcode, answers in seen.seen
                    if name == slot]
    assert ("TXT", 0, 1) in slot_answers
    # The node's own counters saw those NOERROR answers and the NXDOMAIN.
    responses = node.dns_counters.response_counts()
    assert responses.get(("udp", "NOERROR"), 0) + responses.get(("tcp", "NOERROR"), 0) >= 3
    assert responses.get(("udp", "NXDOMAIN"), 0) + responses.get(("tcp", "NXDOMAIN"), 0) >= 1


@pytest_twisted.inlineCallbacks
def test_a_new_slot_under_an_ent_already_cached_resolves(node, unbound):
    """NODATA at the ENT must not poison the subtree: a slot published after the resolver
    cached the mailbox's NODATA is found on the next query (RFC 8020 only prunes below
    NXDOMAIN)."""
    port, process, _ = unbound
    now = reactor.seconds()
    recipient = b"\x42" * 32
    first, second = owners.slot(1, recipient, ZONE), owners.slot(2, recipient, ZONE)
    node.store.put(first, "v=dmp1;t=manifest;one", expiry=now + 600, now=now)
    yield threads.deferToThread(wait_until_serving, port, process)
    reply = yield threads.deferToThread(resolve, port, first)
    assert txt_values(reply) == [b"v=dmp1;t=manifest;one"]
    node.store.put(second, "v=dmp1;t=manifest;two", expiry=now + 600, now=now)
    reply = yield threads.deferToThread(resolve, port, second)
    assert reply.header.rcode == 0
    assert txt_values(reply) == [b"v=dmp1;t=manifest;two"]
