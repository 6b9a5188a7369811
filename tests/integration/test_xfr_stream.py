"""A large AXFR over real TCP from a real node (LMDB on disk, the node's own listeners):
many messages, each TSIG-signed in one chain (dnspython checks every MAC), one serial
while writes go on, and other clients answered while it streams.
"""

import base64
import socket
import struct
import threading
import time

import dns.message
import dns.query
import dns.rdatatype
import dns.tsig
import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from dmfdns.config import parse_config
from dmfdns.node import make_service

from node_support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

NAMES = 6000
SECRET = base64.b64encode(bytes(range(32))).decode()
KEY = dns.tsig.Key("xfr-key", SECRET, "hmac-sha256")
ZONE = """$ORIGIN mesh.test.
$TTL 3600
@ IN SOA ns1.mesh.test. hostmaster.mesh.test. 1 3600 600 604800 60
@ IN NS ns1.mesh.test.
ns1 IN A 127.0.0.1
"""


@pytest.fixture
def node(tmp_path):
    (tmp_path / "mesh.test.zone").write_text(ZONE)
    (tmp_path / "xfr.tsig").write_text(f"hmac-sha256:xfr-key:{SECRET}\n")
    config = parse_config(f"""[node]
data_dir = "{tmp_path / 'data'}"
[store]
map_size = "256MiB"
[dns]
listen = ["127.0.0.1:{free_port()}"]
[http]
listen = []
[[zones]]
file = "mesh.test.zone"
transfer_allow = ["127.0.0.1/32"]
tsig_key_file = "xfr.tsig"
""", base=tmp_path, cwd=tmp_path)
    started = make_service(config, reactor)
    now = time.time()
    started.store.put_many([(f"n{i}.mesh.test", f"value {i} " + "x" * 200, now + 3600)
                            for i in range(NAMES)], now=now)
    started.startService()
    yield started
    pytest_twisted.blockon(started.stopService())


def slow_axfr(port: int, pause_every: int, pause: float, first: threading.Event):
    """An AXFR read by a slow client (it sleeps every ``pause_every`` messages); the
    messages as received. ``first`` is set when the first message has arrived."""
    query = dns.message.make_query("mesh.test.", "AXFR")
    query.use_tsig(KEY)
    wire = query.to_wire()
    messages, buffer, soas = [], b"", 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(struct.pack(">H", len(wire)) + wire)
        while soas < 2:
            chunk = sock.recv(4096)
            assert chunk, "connection closed early"
            buffer += chunk
            while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack_from(">H", buffer)[0]:
                length = struct.unpack_from(">H", buffer)[0]
                message, buffer = buffer[2:2 + length], buffer[2 + length:]
                messages.append(message)
                first.set()
                soas += message.count(b"\x00\x06\x00\x01")   # SOA type/class in answers
                if len(messages) % pause_every == 0:
                    time.sleep(pause)
    return query, messages


def udp_latencies(port: int, stop: threading.Event) -> list:
    latencies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        index = 0
        while not stop.is_set():
            query = dns.message.make_query(f"n{index % NAMES}.mesh.test.", "TXT").to_wire()
            started = time.perf_counter()
            sock.sendto(query, ("127.0.0.1", port))
            sock.recv(4096)
            latencies.append(time.perf_counter() - started)
            index += 1
            time.sleep(0.005)
    return latencies


@pytest_twisted.inlineCallbacks
def test_a_large_transfer_streams_signed_and_others_are_answered_meanwhile(node):
    port = node.dns_addresses("tcp")[0].port
    stop, first = threading.Event(), threading.Event()
    probe = threads.deferToThread(udp_latencies, port, stop)
    transfer = threads.deferToThread(slow_axfr, port, 20, 0.05, first)
    yield threads.deferToThread(first.wait, 30)
    serial = 1 + node.store.generation()
    # Writes during the transfer do not enter it.
    for index in range(5):
        node.store.put(f"late{index}.mesh.test", "late", expiry=time.time() + 60,
                       now=time.time())
        yield threads.deferToThread(time.sleep, 0.05)
    query, messages = yield transfer
    stop.set()
    latencies = yield probe
    assert len(messages) > 50                      # ~16 KiB each
    ctx, records = None, []
    for wire in messages:                          # every MAC, in one chain
        parsed = dns.message.from_wire(wire, keyring=KEY, request_mac=query.mac, xfr=True,
                                       tsig_ctx=ctx, multi=True, one_rr_per_rrset=True)
        ctx = parsed.tsig_ctx
        records.extend(parsed.answer)
    soas = [rr for rr in records if rr.rdtype == dns.rdatatype.SOA]
    assert [rr[0].serial for rr in soas] == [serial, serial]
    assert records[0].rdtype == records[-1].rdtype == dns.rdatatype.SOA
    names = {rr.name.to_text() for rr in records if rr.rdtype == dns.rdatatype.TXT}
    assert len(names) == NAMES and "late0.mesh.test." not in names
    long_value = [rr for rr in records if rr.name.to_text() == "n7.mesh.test."][0][0]
    assert b"".join(long_value.strings) == f"value 7 {'x' * 200}".encode()
    # Other clients were answered all along, none waited long.
    assert len(latencies) > 20
    assert max(latencies) < 0.5, sorted(latencies)[-5:]
    counters = node.transfers.counters
    assert counters.requests[("axfr", "full")] == 1 and counters.messages == len(messages)
