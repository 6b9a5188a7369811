"""A whole node over real loopback sockets: publish over HTTP, read back over DNS (UDP and
TCP) from the same process; /metrics through promtool; an idle-connection flood; and
``dmfdns manifest publish`` against a site with a pinned operator key."""

import hashlib
import json
import shutil
import socket
import subprocess
import sys

import pytest
import pytest_twisted
from dnslib import QTYPE, RCODE, DNSRecord
from prometheus_client import CollectorRegistry
from twisted.internet import reactor, threads

from dmfdns.http.auth import WriteAuth
from dmfdns.http.site import make_site
from dmfdns.store.writes import WriteService
from dmfdns.metrics import NodeMetrics
from dmfdns.proto import cluster_manifest
from dmfdns.proto.signing import Signer
from dmfdns.store.memory_store import MemoryStore

from node_support import TIMEOUT, dns_port, http_call, http_port, node_config, start_node

pytestmark = pytest.mark.integration


@pytest.fixture
def running_node(tmp_path):
    nodes = []

    def start(cluster=None, **http):
        nodes.append(start_node(node_config(tmp_path, tmp_path / "data", cluster=cluster,
                                            http_options=http)))
        return nodes[-1]

    yield start
    for node in nodes:
        pytest_twisted.blockon(node.stopService())


def dns_txt(port, name, *, tcp=False):
    reply = DNSRecord.question(name, "TXT").send("127.0.0.1", port, tcp=tcp, timeout=TIMEOUT)
    return DNSRecord.parse(reply)


def txt_values(answer) -> list[str]:
    return [b"".join(rr.rdata.data).decode() for rr in answer.rr if rr.rtype == QTYPE.TXT]


@pytest_twisted.inlineCallbacks
def test_published_over_http_is_served_over_udp_and_tcp(running_node):
    node = running_node()
    port = http_port(node)
    long_value = "x" * 600  # several character-strings, and over 512 bytes for TCP
    for value in ("hello over http", long_value):
        status, _, body = yield threads.deferToThread(
            http_call, port, "POST", "/v1/records/Greeting.Mesh.Test", {"value": value,
                                                                       "ttl": 120})
        assert (status, json.loads(body)) == (201, {"ok": True})
    udp = yield threads.deferToThread(dns_txt, dns_port(node), "greeting.mesh.test")
    assert udp.header.rcode == RCODE.NOERROR and udp.header.aa
    tcp = yield threads.deferToThread(dns_txt, dns_port(node), "GREETING.mesh.test", tcp=True)
    assert sorted(txt_values(tcp)) == sorted(["hello over http", long_value])
    assert all(rr.ttl <= 120 for rr in tcp.rr)
    status, _, body = yield threads.deferToThread(
        http_call, port, "DELETE", "/v1/records/greeting.mesh.test")
    assert status == 204
    gone = yield threads.deferToThread(dns_txt, dns_port(node), "greeting.mesh.test")
    assert gone.header.rcode == RCODE.NXDOMAIN


@pytest_twisted.inlineCallbacks
def test_health_readiness_and_refusals_on_a_real_port(running_node):
    node = running_node()
    port = http_port(node)
    status, _, body = yield threads.deferToThread(http_call, port, "GET", "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    status, _, body = yield threads.deferToThread(
        http_call, port, "POST", "/v1/records/outside.example", {"value": "x"})
    assert (status, json.loads(body)) == (400, {"error": "record name is outside the served "
                                                         "zones"})

    def oversized():
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"POST /v1/records/a.mesh.test HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 99999999\r\n\r\n")
            return sock.recv(4096)
    answer = yield threads.deferToThread(oversized)
    assert answer.startswith(b"HTTP/1.1 413")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
@pytest_twisted.inlineCallbacks
def test_promtool_accepts_the_node_metrics(running_node):
    node = running_node(metrics_token="scrape-me")
    port = http_port(node)
    yield threads.deferToThread(dns_txt, dns_port(node), "nothing.mesh.test")
    yield threads.deferToThread(http_call, port, "POST", "/v1/records/m.mesh.test",
                                {"value": "x"})
    status, _, _ = yield threads.deferToThread(http_call, port, "GET", "/metrics")
    assert status == 401
    status, headers, body = yield threads.deferToThread(
        http_call, port, "GET", "/metrics", None, {"Authorization": "Bearer scrape-me"})
    assert status == 200
    text = body.decode()
    assert 'dmfdns_dns_requests_total{proto="udp",qtype="TXT"} 1.0' in text
    assert 'dmfdns_dns_responses_total{proto="udp",rcode="NXDOMAIN"} 1.0' in text
    assert "dmfdns_store_values 1.0" in text
    result = yield threads.deferToThread(
        subprocess.run, ["promtool", "check", "metrics"], input=body, capture_output=True,
        timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest_twisted.inlineCallbacks
def test_the_configured_operator_key_admits_a_manifest_at_cluster_base(running_node):
    operator = Signer(hashlib.sha256(b"configured operator").digest())
    node = running_node(cluster={"base": "mesh.test",
                                 "operator_key": operator.public_key.hex()},
                        auth_mode="legacy", operator_token="op-token")
    port = http_port(node)
    entry = cluster_manifest.ClusterNode("n1", f"http://127.0.0.1:{port}", None)
    now = int(reactor.seconds())
    signed = cluster_manifest.sign(1, now + 600, operator.public_key, "mesh.test", [entry],
                                   operator)
    stranger = Signer(bytes(32))
    forged = cluster_manifest.sign(2, now + 600, stranger.public_key, "mesh.test", [entry],
                                   stranger)
    auth = {"Authorization": "Bearer op-token"}
    status, _, body = yield threads.deferToThread(
        http_call, port, "POST", "/v1/records/cluster.mesh.test", {"value": forged}, auth)
    assert status == 400 and b"does not parse or verify" in body
    status, _, _ = yield threads.deferToThread(
        http_call, port, "POST", "/v1/records/cluster.mesh.test", {"value": signed}, auth)
    assert status == 201
    answer = yield threads.deferToThread(dns_txt, dns_port(node), "cluster.mesh.test",
                                         tcp=True)
    assert txt_values(answer) == [signed]


IDLE_CONNECTIONS = 1000


@pytest.mark.slow
@pytest.mark.ci
@pytest_twisted.inlineCallbacks
def test_idle_connection_flood_leaves_dns_and_healthz_up(running_node):
    node = running_node(max_connections=256)
    port = http_port(node)

    def open_idle():
        """From a second loopback address: the flooder is one client, /healthz another."""
        sockets = []
        for index in range(IDLE_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                            source_address=("127.0.0.2", 0))
            try:
                if index % 2:
                    sock.sendall(b"GET /heal")  # a request that never completes (slowloris)
            except OSError:                     # closed at once: the client is at its cap
                pass
            sockets.append(sock)
        return sockets

    sockets = yield threads.deferToThread(open_idle)
    try:
        for attempt in range(3):
            status, _, body = yield threads.deferToThread(http_call, port, "GET", "/healthz")
            assert (status, json.loads(body)) == (200, {"status": "ok"})
            answer = yield threads.deferToThread(dns_txt, dns_port(node), "mesh.test")
            assert answer.header.rcode == RCODE.NOERROR
        counters = node.http.site.counters
        assert counters.connections_open <= 256
        assert (counters.connections_evicted + counters.connections_refused
                >= IDLE_CONNECTIONS - 64)           # the flooder holds at most its own cap
    finally:
        for sock in sockets:
            sock.close()


def _manifest_site(operator: Signer):
    store = MemoryStore(node_id="n1")
    writes = WriteService(store, zones=["mesh.test"], operator_key=operator.public_key,
                          cluster_base="mesh.test")
    site = make_site(store=store, writes=writes, clock=reactor,
                     metrics=NodeMetrics(CollectorRegistry()),
                     auth=WriteAuth("legacy", operator_token="op-token", clock=reactor.seconds)
                     ).site
    return store, site


def _publish(wire, url, *args):
    """``dmfdns manifest publish`` as an operator runs it (its own process and reactor)."""
    result = subprocess.run([sys.executable, "-m", "dmfdns", "manifest", "publish", str(wire),
                             "--node", url, *args], capture_output=True, text=True,
                            timeout=60)
    return result.returncode, result.stdout, result.stderr


def _signed_manifest(tmp_path, operator, url, now):
    entry = cluster_manifest.ClusterNode("n1", url, None)
    wire = tmp_path / "manifest.txt"
    wire.write_text(cluster_manifest.sign(7, int(now) + 3600, operator.public_key,
                                          "mesh.test", [entry], operator) + "\n")
    return wire


@pytest_twisted.inlineCallbacks
def test_manifest_publish_posts_to_a_node_with_a_pinned_operator_key(tmp_path):
    operator = Signer(hashlib.sha256(b"integration operator").digest())
    store, site = _manifest_site(operator)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port.getHost().port}"
        now = reactor.seconds()
        wire = _signed_manifest(tmp_path, operator, url, now)
        token_file = tmp_path / "operator.token"
        token_file.write_text("op-token\n")
        status, out, err = yield threads.deferToThread(_publish, wire, url, "--token-file",
                                                       str(token_file))
        assert status == 0, err
        assert "seq 7" in out and "cluster.mesh.test" in out
        (stored,) = store.get("cluster.mesh.test", reactor.seconds())
        assert stored.value == wire.read_text().strip()
        assert 3590 <= stored.expiry - now <= 3600
        status, _, err = yield threads.deferToThread(_publish, wire, url, "--token", "wrong")
        assert status == 1 and "HTTP 401 unauthorized" in err
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_manifest_publish_over_https_verifies_the_node(tmp_path):
    from dmfdns.tls_listen import HTTP_ALPN, ServerTls, tls_factory
    from tls_support import make_material
    material = make_material(tmp_path)
    operator = Signer(hashlib.sha256(b"integration operator").digest())
    store, site = _manifest_site(operator)
    tls = ServerTls(material.good.cert, material.good.key, alpn=HTTP_ALPN)
    port = reactor.listenTCP(0, tls_factory(tls, site, reactor), interface="127.0.0.1")
    try:
        url = f"https://127.0.0.1:{port.getHost().port}"
        wire = _signed_manifest(tmp_path, operator, url, reactor.seconds())
        status, _, err = yield threads.deferToThread(_publish, wire, url, "--token",
                                                     "op-token")
        assert status == 1 and "Traceback" not in err
        assert "TLS: the certificate chain does not end at a trusted CA" in err
        assert not store.get("cluster.mesh.test", reactor.seconds())
        status, out, err = yield threads.deferToThread(
            _publish, wire, url, "--token", "op-token", "--ca-file", str(material.ca))
        assert status == 0 and "seq 7" in out, err
        assert store.get("cluster.mesh.test", reactor.seconds())
    finally:
        yield port.stopListening()
