"""The background re-signer on a real ``dmfdns serve`` (node_resign.py): with the shortest
refresh period the configuration allows (60 s; validity 1 h), a record written at start is
served with RRSIGs stored at write time, then, once the signing window has moved on,
with RRSIGs the re-signer stored (a later inception), while a validating Unbound anchored
to the zone's DS keeps answering it with AD and the node signs nothing on the fly."""

import subprocess
import time
import urllib.request

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest

import unbound_support
from node_support import free_port
from test_dnssec_validation import (DMFDNS, ROOT, ZONE_FILE, ask, put, start_unbound, stop,
                                    wait_for)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "renewed.mesh.test"


def metric(http_port: int, line_start: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(line_start + " "):
                return float(line.split()[-1])
    return 0.0


def inception(dns_port: int) -> int:
    """The inception of the RRSIG over NAME's TXT, asked of the node with DO."""
    query = dns.message.make_query(NAME, "TXT", use_edns=0, want_dnssec=True)
    response = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=2)
    sig = response.find_rrset(response.answer, dns.name.from_text(NAME), 1,
                              dns.rdatatype.RRSIG, dns.rdatatype.TXT)
    return sig[0].inception


def test_the_resigner_renews_stored_rrsigs_as_the_window_moves(tmp_path):
    dns_port, http_port = free_port(), free_port()
    config = tmp_path / "node.toml"
    config.write_text(f"""[node]
data_dir = "{tmp_path / 'data'}"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:{dns_port}"]
answer_ttl = 2
[http]
listen = ["127.0.0.1:{http_port}"]
[[zones]]
file = "{ZONE_FILE}"
dnssec = true
dnssec_validity = "1h"
dnssec_refresh = "60s"
""")
    node = subprocess.Popen(DMFDNS + ["serve", "--config", str(config)], cwd=tmp_path,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resolver = None
    try:
        wait_for(dns_port, node, "dmfdns serve")
        put(http_port, NAME, "renewed in the background")
        shown = subprocess.run(DMFDNS + ["dnssec", "ds", "mesh.test", "--config",
                                         str(config)], env={"PYTHONPATH": str(ROOT)},
                               capture_output=True, text=True, check=True)
        port, resolver = start_unbound(tmp_path, dns_port,
                                       shown.stdout.splitlines()[0].split(" IN DS ")[1])
        wait_for(port, resolver, "unbound")
        first = inception(dns_port)
        stored = metric(http_port, 'dmfdns_dnssec_answers_total{source="stored"}')
        assert stored >= 1
        deadline = time.monotonic() + 150          # a window of 60 s, a pass each 15 s
        while inception(dns_port) == first:
            assert time.monotonic() < deadline, "the stored RRSIGs were not renewed"
            response = ask(port, NAME)
            assert response.flags & dns.flags.AD, response.to_text()
            time.sleep(1)
        assert inception(dns_port) > first
        assert metric(http_port, "dmfdns_dnssec_resigned_total") >= 1
        assert metric(http_port, 'dmfdns_dnssec_answers_total{source="stored"}') > stored
        assert metric(http_port, 'dmfdns_dnssec_answers_total{source="fallback"}') == 0
        response = ask(port, NAME)
        assert response.flags & dns.flags.AD, response.to_text()
    finally:
        if resolver is not None:
            unbound_support.stop(resolver)
        stop(node)
