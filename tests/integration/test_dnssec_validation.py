"""Validating resolvers in front of a signed node (docs/dns-behaviour.md, "DNSSEC"): a
``dmfdns serve`` process with ``dnssec = true``, Unbound and PowerDNS Recursor anchored to
the DS that ``dmfdns dnssec ds`` prints. AD must come back on a positive TXT, on a record
written after the resolvers started, on compact denials (no such name, NODATA, an empty
non-terminal) and on the apex; resolvers anchored to a wrong DS must SERVFAIL, which
shows that the AD comes from validation. ``dnsviz grok``, given the DNSKEY as its trust
anchor, must find no error or warning in a probe of the zone.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from dnsmesh_support import clean_environ, printed_messages, reference_bin
import unbound_support
from node_support import free_port
from unbound_support import stop  # noqa: F401  (the DNSSEC tests import it from here)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

ROOT = pathlib.Path(__file__).resolve().parents[2]
ZONE_FILE = ROOT / "zones" / "mesh.test.zone"
DMFDNS = [sys.executable, "-m", "dmfdns"]

PDNS = """local-address=127.0.0.1
local-port={port}
dnssec=validate
forward-zones=mesh.test=127.0.0.1:{node}
dont-query=
lua-config-file={dir}/recursor.lua
socket-dir={dir}
daemon=no
write-pid=no
threads=1
security-poll-suffix=
"""
PDNS_LUA = """clearTA()
addTA("mesh.test", "{ds}")
"""


def wait_until(check, what, seconds=20.0):
    """Poll ``check`` every 0.1 s until it is true; a refused or lost query counts as not yet."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, dns.exception.Timeout):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def ask(port: int, name: str, rtype: str = "TXT", *, timeout: float = 3.0):
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    query.flags |= dns.flags.AD
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)


def wait_for(port: int, process, what: str, deadline_s: float = 20.0):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            return ask(port, "mesh.test", "SOA", timeout=0.5)
        except (OSError, dns.exception.Timeout):
            time.sleep(0.1)
    raise AssertionError(f"{what} did not answer on port {port}")


def put(http_port: int, name: str, value: str) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v1/records/{name}", method="POST",
        data=json.dumps({"value": value, "ttl": 3600}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


@pytest.fixture(scope="module", params=["csk", "ksk-zsk"])
def node(tmp_path_factory, request):
    """A signed node with one CSK, or a KSK (DNSKEY, CDS, CDNSKEY) and a ZSK (the rest)."""
    work = tmp_path_factory.mktemp("signed-node")
    dns_port, http_port = free_port(), free_port()
    config = work / "node.toml"
    config.write_text(f"""[node]
data_dir = "{work / 'data'}"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:{dns_port}"]
[http]
listen = ["127.0.0.1:{http_port}"]
[[zones]]
file = "{ZONE_FILE}"
dnssec = true
dnssec_keys = "{request.param}"
""")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(DMFDNS + ["serve", "--config", str(config)], cwd=work,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(dns_port, process, "dmfdns serve")
        put(http_port, "leaf.ent.mesh.test", "hello from a signed zone")
        shown = subprocess.run(DMFDNS + ["dnssec", "ds", "mesh.test", "--config", str(config)],
                               env=env, capture_output=True, text=True, check=True)
        ds = shown.stdout.splitlines()[0].split(" IN DS ")[1]
        dnskey = [line for line in shown.stdout.splitlines() if " IN DNSKEY " in line]
        yield {"dns": dns_port, "http": http_port, "ds": ds, "dnskey": dnskey, "work": work}
    finally:
        stop(process)
        process.stderr.close()


def wrong(ds: str) -> str:
    """The DS with its digest's first byte changed."""
    head, digest = ds.rsplit(" ", 1)
    return f"{head} {'%02X' % (int(digest[:2], 16) ^ 0xFF)}{digest[2:]}"


def start_unbound(work: pathlib.Path, node_port: int, ds: str):
    port = free_port()
    conf = unbound_support.write_config(
        work, port, modules="validator iterator",
        server=("qname-minimisation: yes", "harden-below-nxdomain: yes",
                f'trust-anchor: "mesh.test. DS {ds}"'),
        stub=['name: "mesh.test"', f"stub-addr: 127.0.0.1@{node_port}"])
    return port, unbound_support.start(conf)


def start_pdns(work: pathlib.Path, node_port: int, ds: str):
    binary = shutil.which("pdns_recursor") or "/usr/sbin/pdns_recursor"
    port = free_port()
    work.mkdir()
    (work / "recursor.conf").write_text(PDNS.format(port=port, dir=work, node=node_port))
    (work / "recursor.lua").write_text(PDNS_LUA.format(ds=ds))
    process = subprocess.Popen([binary, f"--config-dir={work}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return port, process


STARTERS = {"unbound": start_unbound, "pdns_recursor": start_pdns}


@pytest.fixture(scope="module", params=sorted(STARTERS))
def resolvers(request, node):
    """``(port of the resolver anchored to the right DS, port of one anchored to a wrong
    DS)`` for one resolver implementation."""
    start = STARTERS[request.param]
    good_port, good = start(node["work"] / f"{request.param}-good", node["dns"], node["ds"])
    bad_port, bad = start(node["work"] / f"{request.param}-bad", node["dns"],
                          wrong(node["ds"]))
    try:
        wait_for(good_port, good, request.param)
        wait_for(bad_port, bad, request.param)
        yield good_port, bad_port
    finally:
        stop(good)
        stop(bad)


def assert_secure(response, rcode=dns.rcode.NOERROR):
    assert response.rcode() == rcode, dns.rcode.to_text(response.rcode())
    assert response.flags & dns.flags.AD, response.to_text()


def txt_values(response) -> list[bytes]:
    return [b"".join(rdata.strings) for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT for rdata in rrset]


def test_positive_txt_is_authenticated(resolvers):
    response = ask(resolvers[0], "leaf.ent.mesh.test")
    assert_secure(response)
    assert txt_values(response) == [b"hello from a signed zone"]


def stored_answers(http_port: int) -> float:
    """How many positive DO answers the node spliced from RRSIGs stored at write time."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith('dmfdns_dnssec_answers_total{source="stored"} '):
                return float(line.split()[-1])
    return 0.0


def test_a_record_written_after_the_resolver_started_is_authenticated(node, resolvers):
    name = f"later-{resolvers[0]}.mesh.test"
    put(node["http"], name, "written later")
    before = stored_answers(node["http"])
    response = ask(resolvers[0], name)
    assert_secure(response)
    assert txt_values(response) == [b"written later"]
    assert stored_answers(node["http"]) > before      # signed when written, not asked


def test_nonexistent_name_is_an_authenticated_denial(resolvers):
    response = ask(resolvers[0], "no-such-name.mesh.test")
    assert response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    assert_secure(response, response.rcode())
    assert not response.answer


def test_nodata_is_authenticated(resolvers):
    response = ask(resolvers[0], "leaf.ent.mesh.test", "A")
    assert_secure(response)
    assert not response.answer


def test_empty_non_terminal_and_its_child(resolvers):
    response = ask(resolvers[0], "ent.mesh.test")
    assert_secure(response)
    assert not response.answer
    assert_secure(ask(resolvers[0], "leaf.ent.mesh.test"))


@pytest.mark.parametrize("rtype", ["SOA", "NS", "DNSKEY", "CDS", "CDNSKEY"])
def test_apex_is_authenticated(resolvers, rtype):
    response = ask(resolvers[0], "mesh.test", rtype)
    assert_secure(response)
    assert [rrset.rdtype for rrset in response.answer
            if rrset.rdtype != dns.rdatatype.RRSIG] == [dns.rdatatype.from_text(rtype)]


@pytest.mark.parametrize("name", ["leaf.ent.mesh.test", "ent.mesh.test",
                                  "no-such-name.mesh.test"])
def test_a_query_for_nsec_is_answered_and_authenticated(resolvers, name):
    response = ask(resolvers[0], name, "NSEC")
    assert_secure(response)
    assert [rrset.rdtype for rrset in response.answer
            if rrset.rdtype != dns.rdatatype.RRSIG] == [dns.rdatatype.NSEC]


def test_a_query_for_rrsig_is_answered(resolvers, request):
    response = ask(resolvers[0], "leaf.ent.mesh.test", "RRSIG")
    if "pdns_recursor" in request.node.callspec.id:
        # PowerDNS Recursor (Debian 4.8) answers an RRSIG query SERVFAIL when it validates;
        # the node's own answer is checked in tests/test_dns_signed.py.
        assert response.rcode() == dns.rcode.SERVFAIL
        return
    assert response.rcode() == dns.rcode.NOERROR
    covered = {rdata.type_covered for rrset in response.answer for rdata in rrset}
    assert dns.rdatatype.TXT in covered


@pytest.mark.parametrize("name,rtype", [("leaf.ent.mesh.test", "TXT"),
                                        ("no-such-name.mesh.test", "TXT"),
                                        ("mesh.test", "SOA")])
def test_a_wrong_trust_anchor_gives_servfail(resolvers, name, rtype):
    response = ask(resolvers[1], name, rtype)
    assert response.rcode() == dns.rcode.SERVFAIL
    assert not response.flags & dns.flags.AD


# Debian's dnsviz 0.9.4 looks for ``pygraphviz.release``, which pygraphviz 1.7 no longer
# has; grok is run with that one attribute supplied.
GROK = """import sys, types, pygraphviz
release = types.ModuleType("pygraphviz.release")
release.version = pygraphviz.__version__
sys.modules["pygraphviz.release"] = pygraphviz.release = release
from dnsviz.commands import grok
grok.main(["grok"] + sys.argv[1:])
"""


def problems(tree, path=""):
    """Every ``errors`` and ``warnings`` entry of a grok report, with where it is."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key in ("errors", "warnings") and value:
                yield f"{path}/{key}: {value}"
            yield from problems(value, f"{path}/{key}")
    elif isinstance(tree, list):
        for item in tree:
            yield from problems(item, path)


def test_dnsviz_grok_with_the_trust_anchor_reports_no_errors(node, tmp_path):
    if shutil.which("named") is None:
        pytest.fail("dnsviz probe -N needs named (bash .ci/run installs bind9)")
    server = f"ns1.mesh.test=127.0.0.1:{node['dns']}"
    probe = subprocess.run(
        ["dnsviz", "probe", "-A", "-x", f"mesh.test:{server}",
         "-N", "mesh.test:ns1.mesh.test=127.0.0.1", "-D", f"mesh.test:{node['ds']}",
         "-R", "TXT,A,SOA,NS,DNSKEY", "-o", str(tmp_path / "probe.json"),
         "mesh.test", "leaf.ent.mesh.test", "ent.mesh.test", "no-such-name.mesh.test"],
        capture_output=True, text=True, timeout=240)
    assert probe.returncode == 0, probe.stderr
    (tmp_path / "anchor").write_text("\n".join(node["dnskey"]) + "\n")
    grok = subprocess.run(
        ["/usr/bin/python3", "-c", GROK, "-t", str(tmp_path / "anchor"), "-l", "info",
         "-r", str(tmp_path / "probe.json")], capture_output=True, text=True, timeout=120)
    assert grok.returncode == 0, grok.stderr
    report = json.loads(grok.stdout)
    assert list(problems(report)) == []
    assert report["mesh.test."]["delegation"]["status"] == "SECURE"
    # Every answer and denial of ours is SECURE; the DS comes from the stand-in parent
    # dnsviz serves itself (unsigned: the chain starts at our anchor).
    statuses = {query["status"] for name in report.values()
                for qid, answers in name.get("queries", {}).items()
                if not qid.endswith("/IN/DS")
                for kind in ("answer", "nodata") for query in answers.get(kind, [])}
    assert statuses == {"SECURE"}


class DnsmeshCli:
    """One user of the pinned ``dnsmesh`` CLI, initialised with ``--require-dnssec`` and
    reading DNS only from 127.0.0.1:``dns_port``."""

    def __init__(self, home: pathlib.Path, username: str, dns_port: int, http_port: int):
        self.binary = str(reference_bin())
        self.env = clean_environ(DMP_CONFIG_HOME=home, DMP_PASSPHRASE=f"{username} pw")
        self.run("init", username, "--domain", "mesh.test", "--endpoint",
                 f"http://127.0.0.1:{http_port}", "--dns-host", "127.0.0.1", "--dns-port",
                 str(dns_port), "--no-default-resolvers", "--no-probe-local-dns",
                 "--require-dnssec")

    def run(self, *args, check=True):
        result = subprocess.run([self.binary, *args], env=self.env, capture_output=True,
                                text=True, timeout=120)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result


def test_dnsmesh_clis_requiring_dnssec_behind_unbound_exchange_a_message(node, tmp_path):
    port, process = start_unbound(tmp_path / "unbound", node["dns"], node["ds"])
    try:
        wait_for(port, process, "unbound")
        alice = DnsmeshCli(tmp_path / "alice", "alice", port, node["http"])
        bob = DnsmeshCli(tmp_path / "bob", "bob", port, node["http"])
        for user in (alice, bob):
            user.run("identity", "publish")
        alice.run("identity", "fetch", "bob@mesh.test", "--add")
        bob.run("identity", "fetch", "alice@mesh.test", "--add")
        alice.run("send", "bob@mesh.test", "hello through a validating resolver")
        received = bob.run("recv")
        assert printed_messages(received.stdout) == ["hello through a validating resolver"]
    finally:
        stop(process)
    # The control: straight to the node, which (authoritative) never sets AD, the same
    # CLI refuses every answer, so the exchange above depended on validation.
    carol = DnsmeshCli(tmp_path / "carol", "carol", node["dns"], node["http"])
    fetched = carol.run("identity", "fetch", "bob@mesh.test", "--add", check=False)
    assert fetched.returncode != 0 and "AD-less" in fetched.stderr
