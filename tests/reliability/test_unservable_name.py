"""The unservable-name write: values of 2,048 bytes POSTed at one name until refused.

Before the RRset wire-size cap, 64 such values were accepted (about 132,000 bytes, more than
a DNS message can carry) and the name answered SERVFAIL over TCP forever. Now the write that
would pass ``MAX_RRSET_WIRE`` is refused with 413 and the name stays answerable: in full over
TCP, truncated (TC, for a retry over TCP) over UDP, both from the lean path and the cache.
"""

import socket
import struct

import pytest
import pytest_twisted
from dnslib import DNSRecord
from twisted.internet import threads

from dmfdns.proto.admission import MAX_RRSET_WIRE
from node_support import dns_port, http_call, http_port, node_config, start_node

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

NAME = "big.mesh.test"


def values(count: int) -> list[str]:
    return [f"{i:04d}" + "x" * 2044 for i in range(count)]


def write_until_refused(port: int) -> tuple[int, int, bytes]:
    for i, value in enumerate(values(64)):
        status, _, body = http_call(port, "POST", f"/v1/records/{NAME}",
                                    {"value": value, "ttl": 3600})
        if status != 201:
            return i, status, body
    return 64, 201, b""


def ask(port: int, *, tcp: bool) -> DNSRecord:
    query = DNSRecord.question(NAME, "TXT").pack()
    if not tcp:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(query, ("127.0.0.1", port))
            return DNSRecord.parse(sock.recv(65535))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        length = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
        return DNSRecord.parse(sock.recv(length, socket.MSG_WAITALL))


@pytest.fixture
def node(tmp_path):
    started = start_node(node_config(tmp_path, tmp_path / "data"))
    yield started
    pytest_twisted.blockon(started.stopService())


@pytest_twisted.inlineCallbacks
def test_a_name_cannot_be_made_unanswerable_by_large_writes(node, figures):
    accepted, status, body = yield threads.deferToThread(write_until_refused, http_port(node))
    assert accepted == MAX_RRSET_WIRE // (12 + 2048 + 9) == 28
    assert status == 413 and b"over the cap of 60000" in body
    over_tcp = yield threads.deferToThread(ask, dns_port(node), tcp=True)
    assert over_tcp.header.rcode == 0 and len(over_tcp.rr) == accepted
    for _ in range(2):                          # built once, then from the answer cache
        over_udp = yield threads.deferToThread(ask, dns_port(node), tcp=False)
        assert over_udp.header.tc == 1 and over_udp.rr == [] and over_udp.header.rcode == 0
    counters = node.responder.counters
    figures(accepted=accepted, refused_status=status, tcp_records=len(over_tcp.rr),
            udp_truncated=counters.truncated_counts().get("udp", 0),
            cache_hits=counters.cache_hits)
    assert counters.truncated_counts() == {"udp": 2}
    assert counters.cache_hits >= 1
