"""The RFC 7583 rollovers as commands on a running node (docs/operator-guide.md, "Key
rollover"), timings accelerated to 2-second TTLs, while a validating Unbound anchored to
the zone's DS (the "parent": its trust anchors, reloaded with unbound-control) answers a
positive TXT, a denial and the DNSKEY RRset every 0.2 s; every answer must carry AD.

* KSK/ZSK layout, with ``[dns] workers = 2`` (the worker process signs with the same keys
  and follows the schedule): ``dmfdns dnssec rollover zsk`` (pre-publication: the new ZSK
  published, signing Ipub later, the old removed Iret after that), then ``rollover ksk``
  (double-DS: both DS at the parent, ``ds-seen``, the new KSK published IpubP later, the
  old removed once the new DNSKEY RRset has reached the caches, the old DS dropped).
* CSK layout: ``rollover csk`` (double-DS, and the new CSK pre-published before it signs
  the data).
* A KSK rollover under a real parent: Knot serves and signs ``test.`` with ``mesh.test``'s
  DS set, changed with ``knotc``, and Unbound and PowerDNS Recursor are anchored to
  ``test.``, so they cache the DS RRset for its TTL instead of having their caches flushed
  by a trust-anchor reload. (Giving the parent the new DS alone instead of both makes this
  test fail: answers SERVFAIL on both resolvers.)

The node steps the keys by itself at the planned times; the test only waits for the DNSKEY
RRset the node serves to show each step. A ZSK switched without pre-publication still
validates through both resolvers here (a signature by a key missing from the cached
DNSKEY RRset makes them fetch it again), so the pre-publication is checked on the node's
own answers: the new ZSK published and not signing, then signing while the old one is
still published.
"""

import shutil
import subprocess
import time
import urllib.request

import dns.dnssec
import dns.flags
import dns.rdatatype
import pytest

import unbound_support
from dmfdns.node_dnssec import KEY_TICK
from node_support import free_port
from secondaries import KNOT_CONF
from test_dnssec_rollover import (DMFDNS, TTL, Poller, Rig, ask, reload_unbound,
                                  start_unbound, wait_until)
from test_dnssec_validation import PDNS, put, stop

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTIONS = (("leaf.mesh.test", "TXT"), ("absent.mesh.test", "TXT"), ("mesh.test", "DNSKEY"))


class TimedRig(Rig):
    """The rollover rig with a key layout, DNS workers and accelerated RFC 7583 timings:
    Ipub = 0 + 2 + 1 s, Iret = 0 + 2 + 1 s, IpubP = 1 + 2 + 1 s."""

    def __init__(self, work, layout: str, workers: int):
        super().__init__(work)
        text = self.config.read_text().replace(
            f"answer_ttl = {TTL}\n", f"answer_ttl = {TTL}\nworkers = {workers}\n")
        self.config.write_text(text + f"""dnssec_keys = "{layout}"
dnssec_propagation = "0s"
dnssec_parent_propagation = "1s"
dnssec_ds_ttl = "{TTL}s"
dnssec_publish_safety = "1s"
dnssec_retire_safety = "1s"
""")

    def keys(self) -> dict:
        """``{tag: flags}`` of the DNSKEY RRset the node serves."""
        response = ask(self.dns, "mesh.test", "DNSKEY")
        return {dns.dnssec.key_id(rdata): rdata.flags for rrset in response.answer
                if rrset.rdtype == dns.rdatatype.DNSKEY for rdata in rrset}

    def txt_signers(self) -> set:
        """Key tags of the RRSIGs over a TXT answer, asked of the node directly."""
        response = ask(self.dns, "leaf.mesh.test")
        return {rdata.key_tag for rrset in response.answer
                if rrset.rdtype == dns.rdatatype.RRSIG for rdata in rrset}

    def status(self) -> str:
        return self.dmfdns("dnssec", "status", "mesh.test")


def start_rig(tmp_path, layout, workers):
    rig = TimedRig(tmp_path, layout, workers)
    rig.node = subprocess.Popen(DMFDNS + ["serve", "--config", str(rig.config)],
                                cwd=tmp_path, env=rig.env, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "node.log", "wb"))
    rig.resolver = None
    wait_until(lambda: len(rig.keys()) == (2 if layout == "ksk-zsk" else 1), "the node")
    put(rig.http, "leaf.mesh.test", "before, during and after")
    start_unbound(rig)
    wait_until(lambda: ask(rig.port, "leaf.mesh.test").flags & dns.flags.AD, "unbound")
    return rig


def settled(check, what: str) -> None:
    """Wait until ``check()`` holds, then long enough for every DNS process to have taken
    the step (each looks at the keys once a second), and check again."""
    wait_until(check, what, 30.0)
    time.sleep(KEY_TICK + 0.2)
    # Each query comes from a new port, so the kernel spreads these over the processes.
    assert all(check() for _ in range(6)), what


def wait_for_keys(rig, expected: set, what: str) -> None:
    try:
        settled(lambda: set(rig.keys()) == expected, what)
    except AssertionError:
        raise AssertionError(f"{what}: {rig.keys()} != {expected}\n{rig.status()}") from None


def roll_zsk(rig) -> None:
    before = rig.keys()
    old_zsk = next(tag for tag, flags in before.items() if flags == 256)
    rig.dmfdns("dnssec", "rollover", "zsk", "mesh.test")
    settled(lambda: len(rig.keys()) == 3, "the new ZSK published")      # at once
    new_zsk = next(tag for tag in rig.keys() if tag not in before)
    assert rig.txt_signers() == {old_zsk}          # pre-published: not signing yet
    settled(lambda: rig.txt_signers() == {new_zsk}, "the new ZSK signing")
    assert old_zsk in rig.keys()                   # still published until Iret has passed
    wait_for_keys(rig, set(before) - {old_zsk} | {new_zsk}, "the old ZSK removed")


def roll_sep(rig, role: str) -> None:
    """Double-DS of the KSK or CSK, the test's Unbound playing the parent."""
    before, old_ds = rig.keys(), rig.ds_set()
    printed = rig.dmfdns("dnssec", "rollover", role, "mesh.test")
    new_ds = printed.splitlines()[0].split(" IN DS ")[1]
    new_tag = int(new_ds.split()[0])
    assert new_tag not in rig.keys() and sorted(rig.ds_set()) == sorted(old_ds + [new_ds])
    reload_unbound(rig, old_ds + [new_ds])       # the parent serves both DS
    rig.dmfdns("dnssec", "ds-seen", "mesh.test", str(new_tag))
    assert "published in DNSKEY" in rig.status()
    settled(lambda: new_tag in rig.keys(), f"the new {role} published")
    old_tag = int(old_ds[0].split()[0])
    assert old_tag in rig.keys()
    wait_for_keys(rig, set(before) - {old_tag} | {new_tag}, f"the old {role} removed")
    assert rig.ds_set() == [new_ds]              # CDS and `ds` name the new key alone
    cds = ask(rig.dns, "mesh.test", "CDS").answer
    assert {rdata.key_tag for rrset in cds if rrset.rdtype == dns.rdatatype.CDS
            for rdata in rrset} == {new_tag}
    reload_unbound(rig, [new_ds])                # the parent drops the old DS
    time.sleep(TTL + 1)


@pytest.mark.ci
def test_zsk_then_ksk_rollover_with_two_dns_processes_keeps_every_answer_authenticated(
        tmp_path):
    rig = start_rig(tmp_path, "ksk-zsk", workers=2)
    poller = Poller(rig.port, QUESTIONS, interval=0.2)
    try:
        poller.start()
        time.sleep(1)
        roll_zsk(rig)
        roll_sep(rig, "ksk")
        metrics = scrape(rig)
    finally:
        poller.halt.set()
        poller.join(timeout=10)
        stop_rig(rig)
    assert_all_authenticated(poller)
    # Both processes answered, and the signing counters are the sum of both.
    assert metrics['dmfdns_dns_worker_queries_total{worker="1"}'] > 0
    assert metrics['dmfdns_dnssec_signatures_total{zone="mesh.test"}'] > 0


def scrape(rig) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{rig.http}/metrics", timeout=10) as page:
        text = page.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_csk_double_ds_rollover_keeps_every_answer_authenticated(tmp_path):
    rig = start_rig(tmp_path, "csk", workers=1)
    poller = Poller(rig.port, QUESTIONS, interval=0.2)
    try:
        poller.start()
        time.sleep(1)
        old_tag = next(iter(rig.keys()))
        roll_sep(rig, "csk")
        signers = rig.txt_signers()
        assert len(signers) == 1 and old_tag not in signers
    finally:
        poller.halt.set()
        poller.join(timeout=10)
        stop_rig(rig)
    assert_all_authenticated(poller)


def stop_rig(rig) -> None:
    for process in (rig.resolver, rig.node):
        if process is not None:
            stop(process)


def assert_all_authenticated(poller) -> None:
    kinds = {answer[0] for answer in poller.answers}
    assert kinds == {f"{name}/{rtype}" for name, rtype in QUESTIONS}
    assert len(poller.answers) > 60, (len(poller.answers), poller.timeouts)
    assert poller.failures() == [], poller.failures()[:5]
    print(f"{len(poller.answers)} answers, all AD; {poller.timeouts} timeouts (reloads)")


# --- a real parent --------------------------------------------------------------------

PARENT_ZONE = f"""$ORIGIN test.
$TTL {TTL}
@        SOA ns hostmaster 1 3600 600 604800 {TTL}
@        NS  ns
ns       A   127.0.0.1
mesh     NS  ns1.mesh
ns1.mesh A   127.0.0.1
"""
# The server, log and database clauses of the secondaries' Knot, then a signed zone.
PARENT_CONF = KNOT_CONF.split("key:\n")[0] + """policy:
  - id: parent
    algorithm: ed25519
    single-type-signing: on
    manual: on
zone:
  - domain: test.
    storage: "{dir}"
    file: "test.zone"
    zonefile-sync: -1
    dnssec-signing: on
    dnssec-policy: parent
"""


class Parent:
    """Knot serving and signing ``test.``, the parent of ``mesh.test``, whose DS set the
    test changes with ``knotc`` (the registrar's job)."""

    def __init__(self, work, port):
        self.dir, self.port = work, port
        work.mkdir()
        (work / "db").mkdir()
        self.conf = work / "knot.conf"
        self.conf.write_text(PARENT_CONF.format(dir=work, port=port))
        (work / "test.zone").write_text(PARENT_ZONE)
        self.run("keymgr", "test.", "generate", "algorithm=ed25519", "ksk=yes", "zsk=yes")
        self.process = subprocess.Popen([shutil.which("knotd") or "/usr/sbin/knotd", "-c",
                                         str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=open(work / "knot.log", "wb"))

    def run(self, program, *args, check=True) -> str:
        done = subprocess.run([program, "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 or not check, done.stdout + done.stderr
        return done.stdout

    def ds_anchor(self) -> str:
        line = next(line for line in self.run("keymgr", "test.", "ds").splitlines()
                    if " 2 " in line.split("DS", 1)[1][:12])
        return line.split(" DS ", 1)[1].strip()

    def set_ds(self, ds_set) -> None:
        self.run("knotc", "zone-begin", "test.")
        self.run("knotc", "zone-unset", "test.", "mesh", "DS", check=False)  # may be none
        for ds in ds_set:
            self.run("knotc", "zone-set", "test.", "mesh", str(TTL), "DS", ds)
        self.run("knotc", "zone-commit", "test.")
        wait_until(lambda: self.ds_served() == sorted(ds_set), "the parent's DS set")

    def ds_served(self) -> list:
        response = ask(self.port, "mesh.test", "DS")
        return sorted(rdata.to_text().upper() for rrset in response.answer
                      if rrset.rdtype == dns.rdatatype.DS for rdata in rrset)


@pytest.mark.ci
def test_ksk_double_ds_under_a_real_parent_keeps_every_answer_authenticated(tmp_path):
    """The same KSK rollover with the DS in a signed parent zone (Knot), so Unbound caches
    the DS RRset for its TTL as it would any registry's: the waits, not a cache flush,
    carry the change."""
    rig = TimedRig(tmp_path, "ksk-zsk", 1)
    rig.node = subprocess.Popen(DMFDNS + ["serve", "--config", str(rig.config)],
                                cwd=tmp_path, env=rig.env, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "node.log", "wb"))
    rig.resolver = None
    parent = Parent(tmp_path / "parent", free_port())
    try:
        wait_until(lambda: len(rig.keys()) == 2, "the node")
        put(rig.http, "leaf.mesh.test", "before, during and after")
        wait_until(lambda: ask(parent.port, "test", "SOA").answer, "knot")
        parent.set_ds(rig.ds_set())
        rig.port = free_port()
        conf = unbound_support.write_config(
            tmp_path / "unbound", rig.port, modules="validator iterator",
            server=(f'trust-anchor: "test. DS {parent.ds_anchor()}"',),
            stub=['name: "test"', f"stub-addr: 127.0.0.1@{parent.port}",
                  "stub-zone:", 'name: "mesh.test"', f"stub-addr: 127.0.0.1@{rig.dns}"])
        rig.resolver = unbound_support.start(conf)
        pdns_port, pdns = start_pdns(tmp_path / "pdns", parent, rig.dns)
        wait_until(lambda: ask(rig.port, "leaf.mesh.test").flags & dns.flags.AD, "unbound")
        wait_until(lambda: ask(pdns_port, "leaf.mesh.test").flags & dns.flags.AD, "pdns")
        poller = Poller(rig.port, QUESTIONS, interval=0.2)
        pdns_poller = Poller(pdns_port, QUESTIONS, interval=0.2)
        poller.start()
        pdns_poller.start()
        try:
            before, old_ds = rig.keys(), rig.ds_set()
            printed = rig.dmfdns("dnssec", "rollover", "ksk", "mesh.test")
            new_ds = printed.splitlines()[0].split(" IN DS ")[1]
            new_tag = int(new_ds.split()[0])
            parent.set_ds(old_ds + [new_ds])
            rig.dmfdns("dnssec", "ds-seen", "mesh.test", str(new_tag))
            old_tag = int(old_ds[0].split()[0])
            wait_for_keys(rig, set(before) - {old_tag} | {new_tag}, "the old KSK removed")
            parent.set_ds([new_ds])
            time.sleep(2 * TTL + 1)         # the old DS RRset leaves Unbound's cache
        finally:
            for each in (poller, pdns_poller):
                each.halt.set()
                each.join(timeout=10)
            stop(pdns)
    finally:
        parent.process.terminate()
        parent.process.wait(timeout=10)
        stop_rig(rig)
    assert_all_authenticated(poller)
    assert_all_authenticated(pdns_poller)


def start_pdns(work, parent: Parent, node_port: int):
    """PowerDNS Recursor validating, anchored to the parent's DS, forwarding test. to the
    parent and mesh.test to the node."""
    binary = shutil.which("pdns_recursor") or "/usr/sbin/pdns_recursor"
    port = free_port()
    work.mkdir()
    conf = PDNS.format(port=port, dir=work, node=node_port).replace(
        f"forward-zones=mesh.test=127.0.0.1:{node_port}",
        f"forward-zones=test=127.0.0.1:{parent.port}, mesh.test=127.0.0.1:{node_port}")
    (work / "recursor.conf").write_text(conf)
    (work / "recursor.lua").write_text(f'clearTA()\naddTA("test", "{parent.ds_anchor()}")\n')
    process = subprocess.Popen([binary, f"--config-dir={work}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return port, process
