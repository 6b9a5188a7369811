"""A whole node over real loopback sockets: publish over HTTP, read back over DNS (UDP and
TCP) from the same process; /metrics through promtool; an idle-connection flood."""

import http.client
import json
import shutil
import socket
import subprocess

import pytest
import pytest_twisted
from dnslib import QTYPE, RCODE, DNSRecord
from twisted.internet import reactor, threads

from dmfdns.config import defaults_dir, parse_config
from dmfdns.node import make_service

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


def node_config(tmp_path, **http):
    zone = (defaults_dir() / "mesh.test.zone").as_posix()
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in http.items())
    text = f"""
zones = ["{zone}"]
[node]
data_dir = "{(tmp_path / 'data').as_posix()}"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:0"]
[http]
listen = ["127.0.0.1:0"]
{extra}"""
    return parse_config(text, base=tmp_path, cwd=tmp_path)


@pytest.fixture
def running_node(tmp_path):
    nodes = []

    def start(**http):
        node = make_service(node_config(tmp_path, **http), reactor)
        node.startService()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        pytest_twisted.blockon(node.stopService())


def http_port(node) -> int:
    (listener,) = [l for l in node.listeners if l.kind == "http"]
    return listener.bound.port


def dns_port(node) -> int:
    return node.dns_addresses("udp")[0].port


def http_call(port, method, path, body=None, headers=None):
    """A blocking HTTP request (run in a thread while the reactor serves it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


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


IDLE_CONNECTIONS = 1000


@pytest.mark.slow
@pytest.mark.ci
@pytest_twisted.inlineCallbacks
def test_idle_connection_flood_leaves_dns_and_healthz_up(running_node):
    node = running_node(max_connections=256)
    port = http_port(node)

    def open_idle():
        sockets = []
        for index in range(IDLE_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            if index % 2:
                sock.sendall(b"GET /heal")  # a request that never completes (slowloris)
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
        assert counters.connections_evicted >= IDLE_CONNECTIONS - 256
    finally:
        for sock in sockets:
            sock.close()
