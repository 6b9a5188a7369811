"""A CSK rollover on a running node while a validating Unbound keeps answering AD
(docs/operator-guide.md, "Key rollover"), with timings accelerated to a 2-second TTL.

The steps, each followed by a wait of the longest TTL involved (RFC 7583 section 3.3,
here with both keys signing during the overlap, RFC 6781 section 4.1.1.2):

1. ``dmfdns dnssec keygen --add`` and SIGHUP: DNSKEY holds the old and new key, and every
   RRset carries a signature by each;
2. the parent's DS set gains the new key's DS (here: Unbound's trust anchors, reloaded);
3. ``dmfdns dnssec retire`` of the old key and SIGHUP: only the new key publishes and signs;
4. the parent drops the old DS (Unbound reloaded with the new DS alone).

A poller asks Unbound for a TXT record and for a name that does not exist, over and over,
from before step 1 to after step 4; every answer must be NOERROR with AD.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import unbound_support
from node_support import free_port
from test_dnssec_validation import put, stop, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

ROOT = pathlib.Path(__file__).resolve().parents[2]
DMFDNS = [sys.executable, "-m", "dmfdns"]
TTL = 2
ZONE = f"""$ORIGIN mesh.test.
$TTL {TTL}
@   SOA ns1 hostmaster 1 3600 600 604800 {TTL}
@   NS  ns1
ns1 A   127.0.0.1
"""


def ask(port, name, rtype="TXT", timeout=1.0):
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    return dns.query.udp_with_fallback(query, "127.0.0.1", port=port, timeout=timeout)[0]


class Poller(threading.Thread):
    """Asks Unbound ``questions`` (name, type) every ``interval`` seconds until stopped
    (by default a positive and a negative name every 50 ms)."""

    def __init__(self, port, questions=(("leaf.mesh.test", "TXT"), ("absent.mesh.test", "TXT")),
                 interval=0.05):
        super().__init__(daemon=True)
        self.port, self.answers, self.timeouts = port, [], 0
        self.questions, self.interval = questions, interval
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for name, rtype in self.questions:
                try:
                    response = ask(self.port, name, rtype)
                except (OSError, dns.exception.Timeout):
                    self.timeouts += 1          # Unbound restarting its threads (reload)
                    continue
                self.answers.append((f"{name}/{rtype}", response.rcode(),
                                     bool(response.flags & dns.flags.AD)))
            self.halt.wait(self.interval)

    def failures(self) -> list:
        return [a for a in self.answers if a[1] != dns.rcode.NOERROR or not a[2]]


class Rig:
    def __init__(self, work: pathlib.Path):
        self.work = work
        (work / "mesh.test.zone").write_text(ZONE)
        self.dns, self.http = free_port(), free_port()
        self.config = work / "node.toml"
        self.config.write_text(f"""[node]
data_dir = "{work / 'data'}"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:{self.dns}"]
answer_ttl = {TTL}
[http]
listen = ["127.0.0.1:{self.http}"]
[[zones]]
file = "mesh.test.zone"
dnssec = true
dnssec_validity = "2h"
dnssec_refresh = "10m"
""")
        self.env = dict(os.environ, PYTHONPATH=str(ROOT))

    def dmfdns(self, *args) -> str:
        return subprocess.run(DMFDNS + list(args) + ["--config", str(self.config)],
                              env=self.env, capture_output=True, text=True,
                              check=True).stdout

    def ds_set(self) -> list[str]:
        return [line.split(" IN DS ")[1] for line in self.dmfdns("dnssec", "ds", "mesh.test")
                .splitlines() if " IN DS " in line]

    def dnskey_count(self) -> int:
        response = ask(self.dns, "mesh.test", "DNSKEY")
        return sum(len(rrset) for rrset in response.answer
                   if rrset.rdtype == dns.rdatatype.DNSKEY)

    def reload_node(self, node, keys: int) -> None:
        node.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.dnskey_count() != keys:
            assert time.monotonic() < deadline, "the reload did not change the DNSKEY set"
            time.sleep(0.1)

    def anchor(self, ds_set) -> None:
        (self.work / "unbound" / "anchors.conf").write_text("".join(
            f'    trust-anchor: "mesh.test. DS {ds}"\n' for ds in ds_set))


@pytest.fixture
def rig(tmp_path):
    made = Rig(tmp_path)
    made.node = subprocess.Popen(DMFDNS + ["serve", "--config", str(made.config)],
                                 cwd=tmp_path, env=made.env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    made.resolver = None
    yield made
    for process in (made.resolver, made.node):
        if process is not None:
            stop(process)


def start_unbound(rig):
    work = rig.work / "unbound"
    work.mkdir()
    rig.port, rig.control = free_port(), free_port()
    rig.anchor(rig.ds_set())
    conf = unbound_support.write_config(
        work, rig.port, modules="validator iterator",
        server=(f'include: "{work}/anchors.conf"',), control_port=rig.control,
        stub=['name: "mesh.test"', f"stub-addr: 127.0.0.1@{rig.dns}"])
    rig.resolver = unbound_support.start(conf)


def reload_unbound(rig, ds_set) -> None:
    rig.anchor(ds_set)
    control = shutil.which("unbound-control") or "/usr/sbin/unbound-control"
    subprocess.run([control, "-c", str(rig.work / "unbound" / "unbound.conf"), "reload"],
                   check=True, capture_output=True, timeout=30)


def test_a_csk_rollover_keeps_every_answer_authenticated(rig):
    wait_until(lambda: rig.dnskey_count() == 1, "the node")
    put(rig.http, "leaf.mesh.test", "before, during and after")
    old_ds = rig.ds_set()
    start_unbound(rig)
    wait_until(lambda: ask(rig.port, "leaf.mesh.test").flags & dns.flags.AD, "unbound")
    poller = Poller(rig.port)
    poller.start()
    try:
        time.sleep(TTL + 1)
        rig.dmfdns("dnssec", "keygen", "mesh.test", "--add")               # step 1
        rig.reload_node(rig.node, 2)
        time.sleep(TTL + 1)
        both = rig.ds_set()
        assert len(both) == 2 and old_ds[0] in both
        reload_unbound(rig, both)                                           # step 2
        time.sleep(TTL + 1)
        old_tag = old_ds[0].split()[0]
        rig.dmfdns("dnssec", "retire", "mesh.test", old_tag)                # step 3
        rig.reload_node(rig.node, 1)
        time.sleep(TTL + 1)
        new_ds = rig.ds_set()
        assert new_ds != old_ds and new_ds[0] in both
        reload_unbound(rig, new_ds)                                         # step 4
        time.sleep(TTL + 1)
    finally:
        poller.halt.set()
        poller.join(timeout=10)
    assert len(poller.answers) > 50, (len(poller.answers), poller.timeouts)
    failures = [a for a in poller.answers if a[1] != dns.rcode.NOERROR or not a[2]]
    assert failures == [], failures[:5]
    # After the rollover only the new key is published, so validation rests on it alone.
    keys = ask(rig.dns, "mesh.test", "DNSKEY").answer
    tags = {dns.dnssec.key_id(rdata) for rrset in keys
            if rrset.rdtype == dns.rdatatype.DNSKEY for rdata in rrset}
    assert tags == {int(new_ds[0].split()[0])} and int(old_tag) not in tags
    print(f"{len(poller.answers)} answers, all AD; {poller.timeouts} timeouts (reloads)")
