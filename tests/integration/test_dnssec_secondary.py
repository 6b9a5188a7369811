"""A signed zone served by a secondary (docs/operator-guide.md, "DNSSEC"): the dmfdns
primary signs online with its key; a Knot secondary transfers the zone (AXFR with TSIG, as
in test_secondaries.py) and signs it online itself (``mod-onlinesign``) with the same key,
imported from the primary's data directory. A validating Unbound anchored to the DS that
``dmfdns dnssec ds`` prints, pointed at the secondary alone, returns AD for a positive TXT
(including one written after the transfer started), a denial and the apex, so the parent
needs one DS whichever server answers.
"""

import pathlib
import shutil
import subprocess
import sys

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from node_support import free_port
from secondaries import KNOT_CONF, KEY_NAME, SECRET, ZONE, Primary, Secondary, txt_set
from test_dnssec_validation import start_unbound, stop, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

ONLINESIGN = """policy:
  - id: dmfdns-key
    algorithm: ed25519
    single-type-signing: on
    manual: on
mod-onlinesign:
  - id: signed
    policy: dmfdns-key
"""


class SigningKnot(Secondary):
    """Knot as a secondary that signs online with the primary's imported key."""

    def start(self, primary_port: int, key_pem: pathlib.Path) -> None:
        (self.dir / "db").mkdir(exist_ok=True)
        text = KNOT_CONF.format(port=self.port, dir=self.dir, key_name=KEY_NAME,
                                secret=SECRET, zone=ZONE, primary=primary_port)
        head, zones = text.split("zone:\n")
        text = (head + ONLINESIGN + "zone:\n" + zones
                + "    module: mod-onlinesign/signed\n")
        path = self.dir / "knot.conf"
        path.write_text(text)
        imported = subprocess.run(
            ["keymgr", "-c", str(path), f"{ZONE}.", "import-pem", str(key_pem),
             "algorithm=ed25519", "ksk=yes", "zsk=yes", "publish=+0", "active=+0"],
            capture_output=True, text=True, timeout=60)
        assert imported.returncode == 0, imported.stdout + imported.stderr
        self.spawn([shutil.which("knotd") or "/usr/sbin/knotd", "-c", str(path)])


def ask(port, name, rtype="TXT", timeout=2.0):
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    return dns.query.udp_with_fallback(query, "127.0.0.1", port=port, timeout=timeout)[0]


@pytest.fixture
def servers(tmp_path):
    knot_port = free_port()
    primary = Primary(tmp_path / "primary", [knot_port], extra_zone="dnssec = true")
    secondary = SigningKnot(tmp_path / "knot", "knot", knot_port)
    resolver = None
    try:
        primary.start()
        primary.post("before.mesh.test", "written before the transfer")
        [key_pem] = (primary.dir / "data" / "dnssec" / ZONE).glob("*.pem")
        secondary.start(primary.dns_port, key_pem)
        wait_until(lambda: txt_set(knot_port, "before.mesh.test")
                   == {"written before the transfer"}, "the transfer", 30.0)
        shown = subprocess.run([sys.executable, "-m", "dmfdns", "dnssec", "ds", ZONE,
                                "--config", "node.toml"], cwd=primary.dir,
                               capture_output=True, text=True, check=True)
        ds = shown.stdout.splitlines()[0].split(" IN DS ")[1]
        port, resolver = start_unbound(tmp_path / "unbound", knot_port, ds)
        wait_until(lambda: ask(port, ZONE, "SOA").rcode() == dns.rcode.NOERROR, "unbound",
                   30.0)
        yield primary, secondary, port
    finally:
        if resolver is not None:
            stop(resolver)
        secondary.stop()
        primary.stop()


def assert_secure(response):
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    assert response.flags & dns.flags.AD, response.to_text()


def test_a_knot_secondary_signing_with_the_zone_key_validates(servers):
    primary, secondary, port = servers
    response = ask(port, "before.mesh.test")
    assert_secure(response)
    assert [b"".join(r.strings) for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT for r in rrset] == \
        [b"written before the transfer"]
    primary.post("after.mesh.test", "written after")     # NOTIFY, IXFR, then signed there
    wait_until(lambda: txt_set(secondary.port, "after.mesh.test") == {"written after"},
               "the IXFR", 30.0)
    assert_secure(ask(port, "after.mesh.test"))
    denial = ask(port, "no-such-name.mesh.test")
    assert_secure(denial)
    assert not denial.answer
    for rtype in ("SOA", "NS", "DNSKEY"):
        assert_secure(ask(port, ZONE, rtype))
    keys = ask(secondary.port, ZONE, "DNSKEY").answer
    primary_keys = ask(primary.dns_port, ZONE, "DNSKEY").answer
    assert [r for r in keys if r.rdtype == dns.rdatatype.DNSKEY][0] == \
        [r for r in primary_keys if r.rdtype == dns.rdatatype.DNSKEY][0]
