"""Malformed DNS input from outside, against a real ``dmfdns serve`` process: random and
mutated datagrams over UDP, garbage frames, lying and split length prefixes over TCP. The
node must keep answering, log no traceback and count no responder error; its memory must
stay bounded. The same input against Knot is the reference (``-m slow``, with knotd).

CI sends 5,000 datagrams and 500 TCP messages; ``tools/reliability`` 100,000 and 16,000.
"""

import shutil
import signal
import subprocess
import sys
import time

import pytest

from attacks import (answers_soa, rss_kib, start_knot, tcp_fuzz, udp_fuzz, wait_answering)
from conftest import scaled
from node_support import free_port, http_call

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ZONE = """$ORIGIN mesh.test.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 604800 60
@ IN NS ns1
ns1 IN A 127.0.0.1
"""
UDP, TCP = scaled(5000, 100_000), scaled(500, 16_000)


@pytest.fixture
def serving(tmp_path):
    dns, http = free_port(), free_port()
    (tmp_path / "mesh.test.zone").write_text(ZONE)
    (tmp_path / "node.toml").write_text(f"""zones = ["mesh.test.zone"]
[node]
data_dir = "{tmp_path / 'data'}"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:{dns}"]
[http]
listen = ["127.0.0.1:{http}"]
""")
    process = subprocess.Popen([sys.executable, "-m", "dmfdns", "serve", "--config",
                                str(tmp_path / "node.toml")], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_answering(dns, process)
        yield process, dns, http
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(20)


def metric(http_port: int, name: str) -> float:
    _, _, body = http_call(http_port, "GET", "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


@pytest.mark.ci
def test_dmfdns_survives_malformed_udp_and_tcp_input(serving, figures):
    process, dns, http = serving
    rss_before = rss_kib(process.pid)
    started = time.monotonic()
    udp_fuzz(dns, UDP)
    tcp_fuzz(dns, TCP)
    elapsed = time.monotonic() - started
    assert process.poll() is None
    assert answers_soa(dns) and answers_soa(dns, tcp=True)
    errors = metric(http, "dmfdns_dns_responder_errors_total")
    rss_after = rss_kib(process.pid)
    figures(udp_packets=UDP, tcp_messages=TCP, seconds=round(elapsed, 1),
            responder_errors=errors, rss_kib_before=rss_before, rss_kib_after=rss_after)
    assert errors == 0
    assert rss_after < rss_before + 64 * 1024            # bounded: under 64 MiB of growth
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert "Traceback" not in process.stderr.read()


@pytest.mark.skipif(shutil.which("knotd") is None, reason="the Knot reference needs knotd")
def test_knot_reference_under_the_same_input(tmp_path, figures):
    (tmp_path / "mesh.test.zone").write_text(ZONE)
    port = free_port()
    knot = start_knot(tmp_path, tmp_path / "mesh.test.zone", port)
    try:
        started = time.monotonic()
        udp_fuzz(port, UDP)
        tcp_fuzz(port, TCP)
        elapsed = time.monotonic() - started
        alive = knot.poll() is None
        answering = answers_soa(port) and answers_soa(port, tcp=True)
        figures(server="knot", udp_packets=UDP, tcp_messages=TCP, seconds=round(elapsed, 1),
                alive=alive, answering=answering)
        assert alive and answering
    finally:
        knot.terminate()
        knot.wait(20)
