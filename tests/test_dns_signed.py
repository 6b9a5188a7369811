"""Online signing in the responder (docs/dns-behaviour.md, "DNSSEC"): every RRset of a DO
answer from a signed zone validates with dnspython against the zone's DNSKEY; denials are
RFC 9824 compact answers; queries without DO get the unsigned responder's exact bytes."""

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest

from dmfdns.dns import dnssec
from dmfdns.dns.responder import Responder, ResponderSettings
from dmfdns.dns.signer import ZoneSigner
from dmfdns.dns.zone import parse_zone
from dmfdns.store.memory_store import MemoryStore

NOW = 1_764_000_000.0
MESH = """\
$ORIGIN mesh.test.
$TTL 3600
@    SOA  ns1 hostmaster 2024010101 3600 600 604800 60
@    NS   ns1
@    NS   ns2.example.
ns1  A    192.0.2.53
_dmp 600 TXT "v=dmp1;t=static"
www  CNAME @
"""
SLOT = "slot-3.mb-abc123.mesh.test"
APEX = dns.name.from_text("mesh.test.")


@pytest.fixture(scope="module", params=[dnssec.ED25519, dnssec.ECDSAP256SHA256],
                ids=["ed25519", "p256"])
def served(request):
    store = MemoryStore()
    store.put(SLOT, "hello", expiry=NOW + 3600, now=NOW)
    store.put(SLOT, "world", expiry=NOW + 30.5, now=NOW)
    store.put("_dmp.mesh.test", "v=dmp1;t=stored", expiry=NOW + 3600, now=NOW)
    store.put_many([("big.mesh.test", f"{i:02d}" + "b" * 198, NOW + 3600)
                    for i in range(10)], now=NOW)
    zone = parse_zone(MESH)
    signer = ZoneSigner((b"mesh", b"test"), [dnssec.ZoneKey.generate(request.param)])
    signed = Responder([zone], store, ResponderSettings(), signers={"mesh.test": signer})
    plain = Responder([zone], store, ResponderSettings())
    return signed, plain, signer


def ask(responder, name, rtype, *, do=True, max_udp=None, payload=1232, flags=0):
    query = dns.message.make_query(name, rtype, use_edns=0, want_dnssec=do,
                                   payload=payload, ednsflags=flags)
    query.id = 0x4242
    wire = responder.respond(query.to_wire(), now=NOW, max_udp=max_udp)
    return dns.message.from_wire(wire)


def keys(signer):
    dnskey = dns.rrset.from_rdata_list(APEX, 3600, [
        dns.rdata.from_wire(1, dnssec.DNSKEY, k, 0, len(k)) for k in signer.dnskey])
    return {APEX: dnskey}


def validate_section(section, signer):
    """Every RRset of ``section`` is covered by a valid RRSIG; returns the types seen."""
    sigs = {(r.name, r.covers): r for r in section if r.rdtype == dns.rdatatype.RRSIG}
    types = []
    for rrset in section:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            continue
        dns.dnssec.validate(rrset, sigs[(rrset.name, rrset.rdtype)], keys(signer), now=NOW)
        types.append(rrset.rdtype)
    return types


def nsec_types(nsec):
    rdata = nsec[0]
    return {dns.rdatatype.to_text(t) for t in _bitmap(rdata.windows)}, rdata.next


def _bitmap(windows):
    return [w * 256 + i * 8 + j for w, bits in windows for i, b in enumerate(bits)
            for j in range(8) if b & (0x80 >> j)]


def test_positive_txt_is_signed_and_validates(served):
    signed, _, signer = served
    response = ask(signed, SLOT, "TXT")
    assert response.rcode() == 0 and response.flags & dns.flags.AA
    assert validate_section(response.answer, signer) == [dns.rdatatype.TXT]
    rrsig = response.find_rrset(response.answer, dns.name.from_text(SLOT + "."),
                                1, dns.rdatatype.RRSIG, dns.rdatatype.TXT)
    assert rrsig[0].original_ttl == 60 and rrsig.ttl <= 31


def test_static_plus_stored_txt_validates(served):
    signed, _, signer = served
    response = ask(signed, "_DMP.Mesh.Test", "TXT")
    assert validate_section(response.answer, signer) == [dns.rdatatype.TXT]
    assert len(response.answer[0]) == 2


@pytest.mark.parametrize("rtype", ["SOA", "NS", "DNSKEY", "CDS", "CDNSKEY"])
def test_apex_rrsets_are_signed(served, rtype):
    signed, _, signer = served
    response = ask(signed, "mesh.test", rtype)
    assert validate_section(response.answer, signer) == [dns.rdatatype.from_text(rtype)]
    if rtype == "NS":
        assert validate_section(response.additional, signer) == [dns.rdatatype.A]


def test_cds_matches_the_ds_of_the_dnskey(served):
    signed, _, signer = served
    cds = ask(signed, "mesh.test", "CDS").answer[0][0]
    dnskey = ask(signed, "mesh.test", "DNSKEY").answer[0][0]
    assert cds.digest == dns.dnssec.make_ds(APEX, dnskey, "SHA256").digest


def test_nonexistent_name_gets_compact_denial(served):
    signed, _, signer = served
    response = ask(signed, "Nope.mesh.test", "TXT")
    assert response.rcode() == 0 and not response.answer
    types = validate_section(response.authority, signer)
    assert sorted(types) == [dns.rdatatype.SOA, dns.rdatatype.NSEC]
    nsec = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC][0]
    bitmap, nxt = nsec_types(nsec)
    assert bitmap == {"RRSIG", "NSEC", "NXNAME"}
    assert nxt == dns.name.from_text("\\000.nope.mesh.test.")
    assert nsec.ttl == 60


def test_compact_answers_ok_restores_nxdomain(served):
    signed, _, signer = served
    response = ask(signed, "nope.mesh.test", "TXT", flags=0x4000)
    assert response.rcode() == 3
    assert sorted(validate_section(response.authority, signer)) == [6, 47]


def test_nodata_bitmap_lists_the_types_at_the_name(served):
    signed, _, signer = served
    bitmap, _ = nsec_types([r for r in ask(signed, SLOT, "A").authority
                            if r.rdtype == dns.rdatatype.NSEC][0])
    assert bitmap == {"TXT", "RRSIG", "NSEC"}
    response = ask(signed, "mesh.test", "TXT")
    nsec = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC][0]
    assert nsec_types(nsec)[0] == {"SOA", "NS", "DNSKEY", "CDS", "CDNSKEY", "RRSIG",
                                   "NSEC"}
    assert sorted(validate_section(response.authority, signer)) == [6, 47]


def test_empty_non_terminal_has_an_empty_bitmap(served):
    signed, _, signer = served
    response = ask(signed, "mb-abc123.mesh.test", "TXT")
    assert response.rcode() == 0
    nsec = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC][0]
    assert nsec_types(nsec)[0] == {"RRSIG", "NSEC"}
    validate_section(response.authority, signer)


@pytest.mark.parametrize("name,rtype", [(SLOT, "TXT"), ("nope.mesh.test", "TXT"),
                                        ("mesh.test", "SOA"), ("mesh.test", "DNSKEY"),
                                        ("mb-abc123.mesh.test", "A")])
def test_without_do_the_answer_is_the_unsigned_responders_bytes(served, name, rtype):
    signed, plain, _ = served
    if rtype == "DNSKEY":
        assert ask(signed, name, rtype, do=False).answer       # the keys are published
        return
    for do_edns in (True, False):
        query = dns.message.make_query(name, rtype, use_edns=0 if do_edns else None)
        wire = query.to_wire()
        assert (signed.respond(wire, now=NOW, max_udp=1232)
                == plain.respond(wire, now=NOW, max_udp=1232))


def test_signed_answer_over_the_udp_limit_is_truncated(served):
    signed, _, signer = served
    response = ask(signed, "big.mesh.test", "TXT", max_udp=1232)
    assert response.flags & dns.flags.TC and not response.answer
    over_tcp = ask(signed, "big.mesh.test", "TXT", max_udp=None)
    assert validate_section(over_tcp.answer, signer) == [dns.rdatatype.TXT]
    unsigned = ask(signed, "big.mesh.test", "TXT", do=False, max_udp=4096, payload=4096)
    assert not unsigned.flags & dns.flags.TC


def test_random_names_cost_one_signature_each_and_the_cache_stays_bounded(served):
    signed, _, signer = served
    ask(signed, "warm.mesh.test", "TXT")
    before = signer.signatures_made
    for index in range(20):
        ask(signed, f"r{index}.mesh.test", "TXT")
    assert signer.signatures_made - before == 20 * len(signer.keys)   # the SOA's is cached
    assert signer.cached_signatures <= signer.settings.cache_entries


def test_the_signers_are_exported_as_metrics(served):
    from prometheus_client import CollectorRegistry, generate_latest

    from dmfdns.metrics import NodeMetrics
    signed, _, signer = served
    metrics = NodeMetrics(CollectorRegistry())
    metrics.watch_dnssec(lambda: signed.signers)
    ask(signed, "metrics-probe.mesh.test", "TXT")
    text = generate_latest(metrics.registry).decode()
    assert (f'dmfdns_dnssec_signatures_total{{zone="mesh.test"}} '
            f'{float(signer.signatures_made)}') in text
    assert (f'dmfdns_dnssec_signature_cache_entries{{zone="mesh.test"}} '
            f'{float(signer.cached_signatures)}') in text
    assert 'dmfdns_dnssec_signature_cache_hits_total{zone="mesh.test"}' in text


@pytest.mark.parametrize("name,types", [
    (SLOT, {"TXT", "RRSIG", "NSEC"}),                              # a name with data
    ("mb-abc123.mesh.test", {"RRSIG", "NSEC"}),                    # an empty non-terminal
    ("nowhere.mesh.test", {"RRSIG", "NSEC", "NXNAME"}),            # no such name
])
def test_a_do_query_for_nsec_gets_the_names_signed_compact_nsec(served, name, types):
    signed, plain, signer = served
    response = ask(signed, name, "NSEC")
    assert response.rcode() == 0 and not response.authority
    assert validate_section(response.answer, signer) == [dns.rdatatype.NSEC]
    nsec = response.find_rrset(response.answer, dns.name.from_text(name + "."), 1,
                               dns.rdatatype.NSEC)
    assert nsec_types(nsec)[0] == types
    # Without DO (or unsigned) there is no NSEC: the plain NODATA or NXDOMAIN.
    assert not ask(signed, name, "NSEC", do=False).answer
    assert ask(signed, name, "NSEC", do=False).to_wire() == ask(plain, name, "NSEC",
                                                               do=False).to_wire()


def test_a_do_query_for_rrsig_gets_the_signatures_of_every_rrset_at_the_name(served):
    signed, _, signer = served
    response = ask(signed, "mesh.test", "RRSIG")
    assert response.rcode() == 0
    covered = sorted(dns.rdatatype.to_text(rdata.type_covered) for rrset in response.answer
                     for rdata in rrset)
    assert all(rrset.rdtype == dns.rdatatype.RRSIG for rrset in response.answer)
    assert covered == ["CDNSKEY", "CDS", "DNSKEY", "NS", "NSEC", "SOA"]
    assert sorted(rdata.type_covered for rrset in ask(signed, "_dmp.mesh.test", "RRSIG").answer
                  for rdata in rrset) == [dns.rdatatype.TXT, dns.rdatatype.NSEC]
    absent = ask(signed, "nowhere.mesh.test", "RRSIG")
    assert [rdata.type_covered for rrset in absent.answer for rdata in rrset] == [
        dns.rdatatype.NSEC]
