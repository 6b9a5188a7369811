"""DNSSEC keys, wire forms and signatures (dns/dnssec.py, dns/signer.py), checked against
dnspython's independent implementation (``dns.dnssec.validate``, ``key_id``, ``make_ds``)."""

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from dnslib import RR, SOA, TXT, A, DNSLabel

from dmfdns.dns import dnssec
from dmfdns.dns.signer import SigningSettings, ZoneSigner, canonical_rdata

NOW = 1_764_000_000.0
APEX = (b"mesh", b"test")
ALGORITHMS = [dnssec.ED25519, dnssec.ECDSAP256SHA256]


def rdata(rtype, wire):
    return dns.rdata.from_wire(dns.rdataclass.IN, rtype, wire, 0, len(wire))


def rrset(name, rtype, ttl, wires):
    out = dns.rrset.RRset(dns.name.from_text(name), dns.rdataclass.IN, rtype)
    for wire in wires:
        out.add(rdata(rtype, wire), ttl)
    return out


def keyring(signer):
    return {dns.name.from_text("mesh.test."): rrset("mesh.test.", dnssec.DNSKEY, 3600,
                                                     signer.dnskey)}


def validate(signer, name, rtype, ttl, wires, sigs):
    dns.dnssec.validate(rrset(name, rtype, ttl, wires), rrset(name, dnssec.RRSIG, ttl, sigs),
                        keyring(signer), now=NOW)


@pytest.fixture(params=ALGORITHMS, ids=["ed25519", "p256"])
def signer(request):
    return ZoneSigner(APEX, [dnssec.ZoneKey.generate(request.param)])


def test_key_tag_ds_and_dnskey_match_dnspython(signer):
    key = signer.keys[0]
    dnskey = rdata(dnssec.DNSKEY, key.dnskey)
    assert key.tag == dns.dnssec.key_id(dnskey)
    assert dnskey.flags == 257 and dnskey.algorithm == key.algorithm
    expected = dns.dnssec.make_ds("mesh.test.", dnskey, "SHA256")
    assert rdata(dnssec.DS, dnssec.ds_rdata(APEX, key)) == expected
    assert signer.apex_rrset(dnssec.CDS) == (dnssec.ds_rdata(APEX, key),)
    assert signer.apex_rrset(dnssec.CDNSKEY) == signer.dnskey


def test_txt_rrset_signature_validates_in_any_order_and_case(signer):
    wires = [b"\x05hello", b"\x03abc", b"\x01z"]
    sigs = signer.rrsigs((b"Slot-1", b"MESH", b"test"), 16, 60, wires, NOW)
    validate(signer, "slot-1.mesh.test.", 16, 60, list(reversed(wires)), sigs)
    rrsig = rdata(dnssec.RRSIG, sigs[0])
    assert rrsig.signer == dns.name.from_text("mesh.test.") and rrsig.labels == 3
    assert rrsig.inception <= NOW < rrsig.expiration


def test_tampered_rrset_does_not_validate(signer):
    sigs = signer.rrsigs((b"a", b"mesh", b"test"), 16, 60, [b"\x01x"], NOW)
    with pytest.raises(dns.dnssec.ValidationFailure):
        validate(signer, "a.mesh.test.", 16, 60, [b"\x01y"], sigs)
    with pytest.raises(dns.dnssec.ValidationFailure):
        validate(signer, "b.mesh.test.", 16, 60, [b"\x01x"], sigs)


def test_sign_section_signs_soa_with_names_canonical(signer):
    soa = RR(DNSLabel("Mesh.Test"), 6, 1, 300,
             SOA(DNSLabel("NS1.Mesh.Test"), DNSLabel("hostmaster.mesh.test"),
                 (7, 3600, 600, 86400, 60)))
    out = signer.sign_section([soa], NOW)
    assert [rr.rtype for rr in out] == [6, dnssec.RRSIG]
    validate(signer, "mesh.test.", 6, 300, [canonical_rdata(soa)],
             [bytes(out[1].rdata.data)])
    assert canonical_rdata(soa).startswith(b"\x03ns1\x04mesh\x04test\x00")


def test_sign_section_uses_original_ttl_and_groups_rrsets(signer):
    first = RR(DNSLabel("a.mesh.test"), 16, 1, 12, TXT(b"one"))
    second = RR(DNSLabel("a.mesh.test"), 16, 1, 12, TXT(b"two"))
    glue = RR(DNSLabel("ns1.mesh.test"), 1, 1, 300, A("192.0.2.1"))
    for rr in (first, second):
        rr.original_ttl = 60
    out = signer.sign_section([first, second, glue], NOW)
    assert [rr.rtype for rr in out] == [16, 16, dnssec.RRSIG, 1, dnssec.RRSIG]
    assert out[2].ttl == 12
    validate(signer, "a.mesh.test.", 16, 60, [b"\x03one", b"\x03two"],
             [bytes(out[2].rdata.data)])


def test_compact_denial_nsec_matches_dnspython_and_validates(signer):
    out = signer.denial(DNSLabel("Nope.mesh.test"), {dnssec.NXNAME}, 60, NOW)
    nsec_wire, sig_wire = bytes(out[0].rdata.data), bytes(out[1].rdata.data)
    nsec = rdata(dnssec.NSEC, nsec_wire)
    assert nsec.next == dns.name.from_text("\\000.nope.mesh.test.")
    types = sorted(t for window, bits in nsec.windows for t in _types(window, bits))
    assert types == [dnssec.RRSIG, dnssec.NSEC, dnssec.NXNAME]
    validate(signer, "nope.mesh.test.", dnssec.NSEC, 60, [nsec_wire], [sig_wire])


def _types(window, bits):
    return [window * 256 + i * 8 + j for i, byte in enumerate(bits) for j in range(8)
            if byte & (0x80 >> j)]


def test_type_bitmap_windows():
    assert dnssec.type_bitmap([1, 16, 46, 47]) == bytes([0, 6, 0x40, 0, 0x80, 0, 0, 0x03])
    assert dnssec.type_bitmap([128])[:2] == bytes([0, 17])
    assert dnssec.type_bitmap([1, 257])[3:5] == bytes([1, 1])


def test_signature_cache_signs_once_per_window_and_is_bounded():
    signer = ZoneSigner(APEX, [dnssec.ZoneKey.generate()],
                        SigningSettings(validity=7 * 86400, refresh=86400, cache_entries=2))
    owner = (b"a", b"mesh", b"test")
    first = signer.rrsigs(owner, 16, 60, [b"\x01x"], NOW)
    assert signer.rrsigs(owner, 16, 60, [b"\x01x"], NOW + 1) == first
    assert (signer.signatures_made, signer.cache_hits) == (1, 1)
    later = signer.rrsigs(owner, 16, 60, [b"\x01x"], NOW + 86400)
    assert later != first and signer.signatures_made == 2
    for index in range(5):
        signer.rrsigs((b"n%d" % index,) + owner[1:], 16, 60, [b"\x01x"], NOW)
    assert signer.cached_signatures == 2


def test_window_moves_with_refresh_and_is_backdated():
    settings = SigningSettings(validity=7200, refresh=600, skew=300)
    signer = ZoneSigner(APEX, [dnssec.ZoneKey.generate()], settings)
    inception, expiration = signer.window(1_000_123.0)
    assert inception == 999_600 - 300          # the refresh period's start, backdated
    assert signer.window(1_000_199.0) == (inception, expiration)
    assert signer.window(1_000_200.0)[0] == 1_000_200 - 300
    assert expiration == 999_600 + 7200        # the backdating does not shorten it
    short = ZoneSigner(APEX, [dnssec.ZoneKey.generate()],
                       SigningSettings(validity=3600, refresh=60))     # skew 3600
    assert short.window(1_000_123.0)[1] == 1_000_080 + 3600
    with pytest.raises(ValueError):
        SigningSettings(validity=600, refresh=600)


def test_pem_round_trip_and_refused_keys():
    key = dnssec.ZoneKey.generate(dnssec.ECDSAP256SHA256)
    again = dnssec.ZoneKey.from_pem(key.to_pem())
    assert again.dnskey == key.dnskey and again.tag == key.tag
    with pytest.raises(dnssec.DnssecKeyError):
        dnssec.ZoneKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    from cryptography.hazmat.primitives.asymmetric import ec
    with pytest.raises(dnssec.DnssecKeyError):
        dnssec.ZoneKey(ec.generate_private_key(ec.SECP384R1()))
