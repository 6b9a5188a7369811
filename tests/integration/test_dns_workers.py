"""``[dns] workers = 2`` on a real ``dmfdns serve`` process: the main process and one
worker share the DNS port (SO_REUSEPORT). Every answer right after a committed write is
the new one, whichever process answers; /metrics adds both up; a killed worker comes
back; SIGTERM stops both."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest
from dnslib import QTYPE, DNSRecord

from dmfdns.config import defaults_dir
from node_support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]


def children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Node:
    def __init__(self, tmp_path, signed: bool = False):
        self.dns, self.http = free_port(), free_port()
        self.config = tmp_path / "node.toml"
        zone_file = json.dumps(str(defaults_dir() / "mesh.test.zone"))
        zones = (f"[[zones]]\nfile = {zone_file}\ndnssec = true\n" if signed
                 else f"zones = [{zone_file}]\n")
        self.config.write_text(zones + f"""[node]
data_dir = "data"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:{self.dns}"]
workers = 2
[http]
listen = ["127.0.0.1:{self.http}"]
rate_limit = 0.0
""")
        self.log = tmp_path / "node.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dmfdns", "serve", "--config", str(self.config)],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def metric(self, line_start: str) -> float:
        with urllib.request.urlopen(self.url("/metrics"), timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(line_start + " "):
                    return float(line.split()[-1])
        return 0.0

    def wait_for(self, check, what: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"node exited: {self.log.read_text()[-3000:]}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {self.log.read_text()[-3000:]}")

    def write(self, method: str, name: str, value: str) -> None:
        body = json.dumps({"value": value, "ttl": 3600}).encode()
        request = urllib.request.Request(self.url(f"/v1/records/{name}"), data=body,
                                         method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 201, 204)

    def ask(self, name: str) -> DNSRecord:
        """One query from a new socket (a new source port, so either process may answer)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.connect(("127.0.0.1", self.dns))
            sock.send(DNSRecord.question(name, "TXT").pack())
            return DNSRecord.parse(sock.recv(65535))


@pytest.fixture(params=[False], ids=["plain"])
def node(tmp_path, request):
    started = Node(tmp_path, signed=request.param)
    started.wait_for(lambda: started.metric("dmfdns_dns_workers") == 1, "the worker")
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait(timeout=10)


def ask_signed(port: int, name: str, rtype: str):
    """A DO query from a new socket (either process may answer), parsed by dnspython."""
    query = dns.message.make_query(name, rtype, use_edns=0, want_dnssec=True)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=2)


def values(answer: DNSRecord) -> set[str]:
    return {b"".join(rr.rdata.data).decode() for rr in answer.rr if rr.rtype == QTYPE.TXT}


def test_two_processes_answer_every_write_at_once_and_stop_together(node):
    main_pid = node.process.pid
    (worker,) = children(main_pid)
    # Every answer right after a committed write is the new one, from either process.
    for round_ in range(15):
        name = f"w{round_ % 3}.mesh.test"
        node.write("POST", name, f"v{round_}")
        for _ in range(8):
            assert f"v{round_}" in values(node.ask(name)), round_
        node.write("DELETE", name, f"v{round_}")
        for _ in range(8):
            answer = node.ask(name)
            assert f"v{round_}" not in values(answer), round_
    # Both processes answered, and one scrape adds them up.
    node.wait_for(lambda: node.metric('dmfdns_dns_worker_queries_total{worker="1"}') > 0,
                  "the worker's counters")
    main_queries = node.metric('dmfdns_dns_worker_queries_total{worker="0"}')
    worker_queries = node.metric('dmfdns_dns_worker_queries_total{worker="1"}')
    assert main_queries > 0 and worker_queries > 0
    node.wait_for(lambda: node.metric('dmfdns_dns_requests_total{proto="udp",qtype="TXT"}')
                  >= 15 * 16, "the summed request count")

    # A killed worker comes back, and the two go on answering.
    os.kill(worker, signal.SIGKILL)
    node.wait_for(lambda: children(main_pid) - {worker} and node.metric(
        "dmfdns_dns_workers") == 1, "the worker to be restarted")
    assert node.metric("dmfdns_dns_worker_restarts_total") == 1
    (restarted,) = children(main_pid)
    node.write("POST", "after.mesh.test", "back")
    assert all("back" in values(node.ask("after.mesh.test")) for _ in range(10))

    # SIGTERM stops the main process and its worker.
    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(timeout=20) == 0
    deadline = time.monotonic() + 10
    while alive(restarted) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(restarted)
    assert not alive(worker)


@pytest.mark.parametrize("node", [True], ids=["signed"], indirect=True)
def test_both_processes_serve_the_rrsigs_stored_at_write_time(node):
    apex = dns.name.from_text("mesh.test.")
    keys = ask_signed(node.dns, "mesh.test", "DNSKEY")
    keyring = {apex: keys.find_rrset(keys.answer, apex, 1, dns.rdatatype.DNSKEY)}
    names = [f"s{index}.mesh.test" for index in range(4)]
    for index, name in enumerate(names):
        node.write("POST", name, f"signed {index}")
    for round_ in range(10):
        for name in names:
            response = ask_signed(node.dns, name, "TXT")
            owner = dns.name.from_text(name)
            txt = response.find_rrset(response.answer, owner, 1, dns.rdatatype.TXT)
            sig = response.find_rrset(response.answer, owner, 1, dns.rdatatype.RRSIG,
                                      dns.rdatatype.TXT)
            dns.dnssec.validate(txt, sig, keyring)
    node.wait_for(lambda: node.metric('dmfdns_dns_worker_queries_total{worker="1"}') > 0
                  and node.metric('dmfdns_dns_worker_queries_total{worker="0"}') > 0,
                  "queries answered by both processes")
    # Each process answers a name once from the store (then from its answer cache), with
    # the stored RRSIGs: more stored answers than names means both processes spliced them.
    node.wait_for(lambda: node.metric('dmfdns_dnssec_answers_total{source="stored"}')
                  > len(names), "stored RRSIGs served by both processes")
    assert node.metric('dmfdns_dnssec_answers_total{source="fallback"}') == 0
    assert node.metric("dmfdns_dnssec_stored_records_total") >= len(names)

    # Over 1,232 bytes signed: TC over UDP, then the whole signed RRset over TCP.
    for index in range(6):
        node.write("POST", "big.mesh.test", f"{index:02d}" + "b" * 198)
    owner = dns.name.from_text("big.mesh.test")
    query = dns.message.make_query(owner, "TXT", use_edns=0, want_dnssec=True,
                                   payload=4096)
    over_udp = dns.query.udp(query, "127.0.0.1", port=node.dns, timeout=2)
    assert over_udp.flags & dns.flags.TC and not over_udp.answer
    over_tcp = dns.query.tcp(query, "127.0.0.1", port=node.dns, timeout=2)
    assert len(over_tcp.to_wire()) > 1232
    txt = over_tcp.find_rrset(over_tcp.answer, owner, 1, dns.rdatatype.TXT)
    dns.dnssec.validate(txt, over_tcp.find_rrset(over_tcp.answer, owner, 1,
                                                 dns.rdatatype.RRSIG, dns.rdatatype.TXT),
                        keyring)
    assert len(txt) == 6
