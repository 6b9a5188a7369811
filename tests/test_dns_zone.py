"""The RFC 1035 master-file loader: what it accepts, and the line of what it refuses."""

import pytest
from dnslib import QTYPE, DNSBuffer

from dmfdns.dns.zone import ZoneError, parse_zone

ZONE = """\
$ORIGIN mesh.test.
$TTL 1h
@   IN  SOA ns1 hostmaster ( 2024010101 ; serial
            3600 600 1w 60 )
        IN  NS  ns1
            NS  ns2.example.
ns1     IN  A   192.0.2.53
            AAAA 2001:db8::53
; a comment line
    ; an indented comment line

_dmp    300 IN TXT "v=dmp1;t=boot" "second\\059part"
Mixed.Case IN 30 TXT "x"
raw     TYPE65280 \\# 4 0a000001
www     CNAME @
"""


def load(text=ZONE, **kw):
    return parse_zone(text, source="mesh.test.zone", **kw)


def refused(text, **kw) -> ZoneError:
    with pytest.raises(ZoneError) as info:
        load(text, **kw)
    return info.value


def test_origin_soa_and_negative_ttl():
    zone = load()
    assert zone.origin == "mesh.test"
    assert zone.serial == 2024010101
    assert zone.soa.rdata.times == (2024010101, 3600, 600, 604800, 60)
    # RFC 2308 section 5: min(SOA TTL 3600, MINIMUM 60)
    assert zone.negative_ttl == 60


def test_relative_names_ttl_defaults_and_inherited_owner():
    zone = load()
    ns = zone.rrset("mesh.test", QTYPE.NS)
    assert sorted(str(rr.rdata) for rr in ns) == ["ns1.mesh.test.", "ns2.example."]
    assert [rr.ttl for rr in ns] == [3600, 3600]
    assert str(zone.rrset("ns1.mesh.test", QTYPE.AAAA)[0].rdata) == "2001:db8::53"
    assert zone.rrset("_dmp.mesh.test", QTYPE.TXT)[0].ttl == 300


def test_txt_strings_and_decimal_escape():
    rr = load().rrset("_dmp.mesh.test", QTYPE.TXT)[0]
    # "\059" is decimal 59, a semicolon (RFC 1035 section 5.1), not octal.
    assert rr.rdata.data == [b"v=dmp1;t=boot", b"second;part"]


def test_owner_names_are_canonical_lowercase_and_class_ttl_order_is_free():
    zone = load()
    assert zone.has_name("mixed.case.mesh.test")
    rr = zone.rrset("mixed.case.mesh.test", QTYPE.TXT)[0]
    assert rr.ttl == 30 and str(rr.rname) == "mixed.case.mesh.test."


def test_generic_rfc3597_type_and_at_sign_in_rdata():
    zone = load()
    raw = zone.rrset("raw.mesh.test", 65280)[0]
    buffer = DNSBuffer()
    raw.rdata.pack(buffer)
    assert bytes(buffer.data) == bytes.fromhex("0a000001")
    assert str(zone.rrset("www.mesh.test", QTYPE.CNAME)[0].rdata) == "mesh.test."


def test_glue_and_descendants():
    zone = load()
    glue = zone.glue(zone.rrset("mesh.test", QTYPE.NS))
    assert sorted(QTYPE.get(rr.rtype) for rr in glue) == ["A", "AAAA"]
    assert zone.has_descendants("mesh.test")
    assert zone.has_descendants("case.mesh.test")       # empty non-terminal
    assert not zone.has_name("case.mesh.test")
    assert not zone.has_descendants("ns1.mesh.test")


def test_origin_argument_sets_the_start_and_must_match_the_soa():
    text = "$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"
    assert load(text, origin="Mesh.Test.").origin == "mesh.test"
    error = refused("$TTL 60\nother.test. SOA a b 1 2 3 4 5\n", origin="mesh.test")
    assert error.line == 2 and "apex" in error.message


def test_duplicate_records_collapse_and_rrset_ttls_are_unified():
    text = ZONE + "dup 10 TXT a\ndup 20 TXT a\ndup 30 TXT b\n"
    rrset = load(text).rrset("dup.mesh.test", QTYPE.TXT)
    assert len(rrset) == 2                      # RFC 2181 section 5: an RRset is a set
    assert {rr.ttl for rr in rrset} == {10}     # RFC 2181 section 5.2: one TTL


BASE = "$ORIGIN mesh.test.\n$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"


@pytest.mark.parametrize("extra, line, words", [
    ("@ SOA ns1 h 2 2 3 4 5\n", 6, "second SOA"),
    ("sub NS ns.other.\n", 6, "delegations"),
    ("foo.example. A 192.0.2.9\n", 6, "outside the zone"),
    ("$INCLUDE other.zone\n", 6, "$INCLUDE"),
    ("$GENERATE 1-2 a$ A 1.2.3.4\n", 6, "unknown directive"),
    ("$ORIGIN relative\n", 6, "absolute"),
    ("a BOGUS 1\n", 6, "unknown record type"),
    ("\n\nb A 1.2.3\n", 8, "bad A data"),
    ("c CH TXT x\n", 6, "class CH"),
    ("*.w A 192.0.2.1\n", 6, "wildcards"),
    ("d 4294967295 A 192.0.2.1\n", 6, "exceeds"),
    ("e CNAME ns1\ne A 192.0.2.2\n", 6, "CNAME"),
    ("f DNAME mesh.test.\n", 6, "not supported"),
    ("g TYPE65280 \\# 5 0a000001\n", 6, "length says 5"),
    ("h TXT \"" + "x" * 256 + "\"\n", 6, "bad TXT data"),
    ("i OPT 00\n", 6, "meta type"),
])
def test_errors_name_the_line(extra, line, words):
    error = refused(BASE + extra)
    assert error.line == line
    assert words in error.message
    assert str(error).startswith(f"mesh.test.zone:{line}: ")


@pytest.mark.parametrize("record, expected", [
    ("@ SOA ns1 h x 2 3 4 5", "two names, then five numbers"),
    ("a A 1.2.3", "an IPv4 address"),
    ("a AAAA ::zz", "an IPv6 address"),
    ("a MX ten mail", "PREFERENCE EXCHANGE"),
    ("a SRV 1 2 x target", "PRIORITY WEIGHT PORT TARGET"),
    ("a SSHFP x y", "RFC 3597"),
])
def test_bad_rdata_says_what_was_expected_not_the_parsers_internals(record, expected):
    message = refused(BASE + record + "\n").message
    assert expected in message
    assert "invalid literal" not in message and "Attribute" not in message


def test_structural_errors():
    assert "no SOA" in refused("$TTL 60\nmesh.test. NS ns1.mesh.test.\n").message
    assert "no NS" in refused("$TTL 60\nmesh.test. SOA a b 1 2 3 4 5\n").message
    glue = refused("$ORIGIN mesh.test.\n$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\n")
    assert glue.line == 4 and "glue" in glue.message
    assert "no TTL" in refused("mesh.test. SOA a b 1 2 3 4 5\n").message


def test_a_multi_line_record_reports_its_first_line():
    text = BASE + "x TXT (\n \"a\"\n \"b\" ) ; ok\n"
    assert load(text).rrset("x.mesh.test", QTYPE.TXT)[0].rdata.data == [b"a", b"b"]
    assert refused(text + "y A (\n 1.2.3 )\n").line == 9


@pytest.mark.parametrize("junk", ["\x00\x01", "é A 1.2.3.4", "@ SOA", "$TTL", "$TTL x",
                                  '"unterminated', "(((", "@ 99999999999999999999 A 1.2.3.4"])
def test_garbage_is_a_zone_error_never_another_exception(junk):
    with pytest.raises(ZoneError):
        load(BASE + junk + "\n")
