"""The responder, bytes in and bytes out: each case is a query built with dnslib and the
exact response expected, also built with dnslib from the behaviour docs/dns-behaviour.md
describes (flags, sections, TTLs, EDNS), over MemoryStore and two parsed zones."""

import struct

import pytest
from dnslib import (CLASS, EDNS0, QTYPE, RD, RR, SOA, TXT, A, AAAA, CNAME, NS, DNSHeader,
                    DNSLabel, DNSQuestion, DNSRecord, EDNSOption)
from hypothesis import given, strategies as st

from dmfdns.dns import cookies
from dmfdns.dns.responder import Responder, ResponderSettings
from dmfdns.dns.zone import parse_zone
from dmfdns.store.memory_store import MemoryStore

NOW = 1_700_000_000.0
SECRET = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")
CLIENT = "198.51.100.100"

MESH = """\
$ORIGIN mesh.test.
$TTL 3600
@    SOA  ns1 hostmaster 2024010101 3600 600 604800 60
@    NS   ns1
@    NS   ns2.example.
@    A    192.0.2.1
@    AAAA 2001:db8::1
ns1  A    192.0.2.53
ns1  AAAA 2001:db8::53
_dmp 600 TXT "v=dmp1;t=static"
www  CNAME @
"""
NESTED = """\
$ORIGIN deep.ent.mesh.test.
$TTL 300
@ SOA ns1.mesh.test. hostmaster.mesh.test. 7 3600 600 604800 30
@ NS  ns1.mesh.test.
"""
SLOT = "slot-3.mb-abc123.mesh.test"
LONG = "x" * 300


def build_store() -> MemoryStore:
    store = MemoryStore()
    store.put(SLOT, "hello", expiry=NOW + 3600, now=NOW)
    store.put(SLOT, LONG, expiry=NOW + 30.5, now=NOW)
    store.put("short.mesh.test", "soon", expiry=NOW + 0.5, now=NOW)
    store.put("expired.mesh.test", "old", expiry=NOW - 1, now=NOW - 100)
    store.put("_dmp.mesh.test", "v=dmp1;t=stored", expiry=NOW + 3600, now=NOW)
    store.put("v.deep.ent.mesh.test", "nested", expiry=NOW + 3600, now=NOW)
    store.put_many([("big.mesh.test", f"{i:02d}" + "b" * 198, NOW + 3600) for i in range(10)],
                   now=NOW)
    store.put_many([("huge.mesh.test", f"{i}" * 60000, NOW + 3600) for i in range(2)],
                   now=NOW)
    return store


STORE = build_store()
GENERATION = STORE.generation()
ZONES = [parse_zone(MESH), parse_zone(NESTED)]
SETTINGS = ResponderSettings(nsid=b"node-1", server_id="node-1.mesh.test", version="dmfdns 0.1",
                             cookie_secret=SECRET)
RESPONDERS = {
    "default": Responder(ZONES, STORE, SETTINGS),
    "bare": Responder(ZONES, STORE, ResponderSettings()),
    "update": Responder(ZONES, STORE, ResponderSettings(update_enabled=True)),
}


# Query and response builders.

def query(name, qtype="TXT", qclass="IN", *, rd=True, cd=False, ad=False, z=False,
          opcode=0, edns=None, qid=0x1234) -> bytes:
    header = DNSHeader(id=qid, bitmap=(opcode << 11) | (rd << 8) | (z << 6) | (ad << 5)
                       | (cd << 4))
    qtype = qtype if isinstance(qtype, int) else getattr(QTYPE, qtype)
    qclass = qclass if isinstance(qclass, int) else getattr(CLASS, qclass)
    record = DNSRecord(header, q=DNSQuestion(name, qtype, qclass))
    if edns is not None:
        record.add_ar(edns)
    return bytes(record.pack())


def opt(payload=4096, *, version=0, do=False, options=(), flags=0) -> EDNS0:
    record = EDNS0(udp_len=payload, version=version, flags="do" if do else "",
                   opts=list(options))
    record.ttl |= flags
    return record


def our_opt(*, do=False, ext_rcode=0, options=()) -> EDNS0:
    return EDNS0(udp_len=1232, ext_rcode=ext_rcode, flags="do" if do else "",
                 opts=list(options))


def reply(query_bytes, *, rcode=0, aa=True, tc=False, answer=(), authority=(),
          additional=(), edns=None, question=True) -> bytes:
    asked = DNSRecord.parse(query_bytes)
    h = asked.header
    flags = (0x8000 | (h.opcode << 11) | (aa << 10) | (tc << 9) | (h.rd << 8) | (h.cd << 4)
             | (rcode & 0xF))
    record = DNSRecord(DNSHeader(id=h.id, bitmap=flags),
                       questions=list(asked.questions) if question else [],
                       rr=list(answer), auth=list(authority), ar=list(additional))
    if edns is not None:
        record.add_ar(edns)
    return bytes(record.pack())


def txt(owner, ttl, *strings, rclass=CLASS.IN):
    return RR(owner, QTYPE.TXT, rclass, ttl, TXT(list(strings)))


def soa(owner="mesh.test", ttl=60, serial=2024010101, minimum=60):
    times = ((serial + GENERATION) % 2**32, 3600, 600, 604800, minimum)
    return RR(owner, QTYPE.SOA, CLASS.IN, ttl,
              SOA("ns1.mesh.test", "hostmaster.mesh.test", times))


def nested_soa(owner="deep.ent.mesh.test"):
    return soa(owner, ttl=30, serial=7, minimum=30)


def ede(code):
    return EDNSOption(15, struct.pack(">H", code))


def server_cookie(client_cookie):
    return EDNSOption(10, client_cookie + cookies.server_cookie(
        SECRET, client_cookie, cookies.client_address(CLIENT), NOW))


SLOT_ANSWER = [txt(SLOT, 30, b"hello"), txt(SLOT, 30, b"x" * 255, b"x" * 45)]
BIG = "big.mesh.test"
BIG_ANSWER = [txt(BIG, 60, (f"{i:02d}" + "b" * 198).encode()) for i in range(10)]


def case(name, q, expected, *, max_udp=1232, responder="default"):
    return pytest.param(q, expected, max_udp, responder, id=name)


def cases():
    q = query(SLOT)
    yield case("txt-from-store-ttl-is-min-of-remaining-lifetimes", q,
               reply(q, answer=SLOT_ANSWER))
    q = query("SLOT-3.Mb-ABC123.mesh.TEST")
    yield case("0x20-case-echoed-in-question-and-owner", q, reply(q, answer=[
        txt("SLOT-3.Mb-ABC123.mesh.TEST", 30, b"hello"),
        txt("SLOT-3.Mb-ABC123.mesh.TEST", 30, b"x" * 255, b"x" * 45)]))
    q = query(SLOT, edns=opt(4096))
    yield case("edns-echoed-with-our-payload", q,
               reply(q, answer=SLOT_ANSWER, edns=our_opt()))
    q = query(SLOT, edns=opt(4096, do=True))
    yield case("edns-do-bit-copied", q, reply(q, answer=SLOT_ANSWER, edns=our_opt(do=True)))
    q = query(SLOT, rd=False, cd=True)
    yield case("rd-and-cd-copied", q, reply(q, answer=SLOT_ANSWER))
    q = query("mesh.test", "SOA", rd=False, z=True, ad=True)
    yield case("z-and-ad-not-copied", q, reply(q, answer=[soa(ttl=3600)]))
    q = query("short.mesh.test")
    yield case("ttl-zero-under-one-second-left", q,
               reply(q, answer=[txt("short.mesh.test", 0, b"soon")]))
    q = query("expired.mesh.test")
    yield case("expired-values-are-not-served", q, reply(q, rcode=3, authority=[soa()]))
    q = query("_dmp.mesh.test")
    yield case("static-txt-joins-stored-txt-one-ttl", q, reply(q, answer=[
        txt("_dmp.mesh.test", 60, b"v=dmp1;t=static"),
        txt("_dmp.mesh.test", 60, b"v=dmp1;t=stored")]))
    q = query("mb-abc123.mesh.test")
    yield case("empty-non-terminal-is-nodata", q, reply(q, authority=[soa()]))
    q = query("MB-abc123.Mesh.Test", "A")
    yield case("empty-non-terminal-a-is-nodata-soa-owner-in-query-case", q,
               reply(q, authority=[soa("Mesh.Test")]))
    q = query("ent.mesh.test")
    yield case("name-above-a-nested-zone-is-nodata", q, reply(q, authority=[soa()]))
    q = query("nope.mesh.test")
    yield case("nxdomain-with-soa-negative-ttl", q, reply(q, rcode=3, authority=[soa()]))
    q = query(SLOT, "A")
    yield case("other-type-at-stored-name-is-nodata", q, reply(q, authority=[soa()]))
    q = query("mesh.test", 1000)
    yield case("unknown-type-at-apex-is-nodata", q, reply(q, authority=[soa()]))
    q = query("mesh.test", "SOA")
    yield case("apex-soa-serial-plus-generation", q, reply(q, answer=[soa(ttl=3600)]))
    q = query("mesh.test", "NS")
    yield case("apex-ns-with-in-zone-glue", q, reply(q, answer=[
        RR("mesh.test", QTYPE.NS, CLASS.IN, 3600, NS("ns1.mesh.test")),
        RR("mesh.test", QTYPE.NS, CLASS.IN, 3600, NS("ns2.example"))], additional=[
        RR("ns1.mesh.test", QTYPE.A, CLASS.IN, 3600, A("192.0.2.53")),
        RR("ns1.mesh.test", QTYPE.AAAA, CLASS.IN, 3600, AAAA("2001:db8::53"))]))
    q = query("mesh.test", "A")
    yield case("apex-a", q, reply(q, answer=[
        RR("mesh.test", QTYPE.A, CLASS.IN, 3600, A("192.0.2.1"))]))
    q = query("mesh.test", "AAAA")
    yield case("apex-aaaa", q, reply(q, answer=[
        RR("mesh.test", QTYPE.AAAA, CLASS.IN, 3600, AAAA("2001:db8::1"))]))
    q = query("www.mesh.test", "A")
    yield case("cname-answers-other-types", q, reply(q, answer=[
        RR("www.mesh.test", QTYPE.CNAME, CLASS.IN, 3600, CNAME("mesh.test"))]))
    q = query("nope.deep.ent.mesh.test")
    yield case("most-specific-zone-wins", q, reply(q, rcode=3, authority=[nested_soa()]))
    q = query("v.deep.ent.mesh.test")
    yield case("stored-txt-in-nested-zone", q,
               reply(q, answer=[txt("v.deep.ent.mesh.test", 60, b"nested")]))
    q = query("example.com")
    yield case("out-of-zone-refused-without-aa", q, reply(q, rcode=5, aa=False))
    q = query("test", "SOA", edns=opt())
    yield case("parent-of-zone-refused-with-ede-20", q,
               reply(q, rcode=5, aa=False, edns=our_opt(options=[ede(20)])))
    q = query(SLOT, "ANY")
    yield case("minimal-any-gives-the-txt-rrset", q, reply(q, answer=SLOT_ANSWER))
    q = query("mesh.test", "ANY")
    yield case("minimal-any-elsewhere-hinfo-rfc8482", q, reply(q, answer=[
        RR("mesh.test", 13, CLASS.IN, 60, RD(b"\x07RFC8482\x00"))]))
    q = query("mb-abc123.mesh.test", "ANY")
    yield case("any-at-empty-non-terminal-is-nodata", q, reply(q, authority=[soa()]))
    q = query("nope.mesh.test", "ANY")
    yield case("any-at-missing-name-is-nxdomain", q, reply(q, rcode=3, authority=[soa()]))
    for qtype in ("AXFR", "IXFR"):
        q = query("mesh.test", qtype, edns=opt())
        yield case(f"{qtype.lower()}-refused-with-ede-18", q,
                   reply(q, rcode=5, aa=False, edns=our_opt(options=[ede(18)])))
    for opcode, label in ((1, "iquery"), (2, "status"), (4, "notify"), (15, "opcode-15")):
        q = query("mesh.test", "SOA", opcode=opcode)
        yield case(f"{label}-notimp", q, reply(q, rcode=4, aa=False))
    q = bytes(DNSRecord(DNSHeader(id=7, bitmap=15 << 11)).pack())
    yield case("header-only-opcode-15-notimp", q, reply(q, rcode=4, aa=False, question=False))
    q = query("mesh.test", "SOA", opcode=5)
    yield case("update-refused-while-disabled", q, reply(q, rcode=5, aa=False))
    yield case("update-notimp-when-enabled-without-handler", q, reply(q, rcode=4, aa=False),
               responder="update")
    q = bytes(DNSRecord(DNSHeader(id=9, bitmap=0x0100)).pack())
    yield case("qdcount-0-formerr", q, reply(q, rcode=1, aa=False, question=False))
    two = DNSRecord(DNSHeader(id=10, bitmap=0x0100),
                    questions=[DNSQuestion("mesh.test"), DNSQuestion("ns1.mesh.test")])
    q = bytes(two.pack())
    yield case("qdcount-2-formerr", q, reply(q, rcode=1, aa=False, question=False))
    q = query(SLOT)[:-3]
    yield case("truncated-question-formerr", q,
               bytes(DNSRecord(DNSHeader(id=0x1234, bitmap=0x8101)).pack()))
    q = query("mesh.test", "SOA")
    yield case("trailing-bytes-formerr", q + b"junk", reply(q, rcode=1, aa=False))
    q = query("mesh.test", "OPT")
    yield case("qtype-opt-formerr", q, reply(q, rcode=1, aa=False))
    q = query("mesh.test", "SOA", qclass=4)
    yield case("class-hs-refused", q, reply(q, rcode=5, aa=False))
    q = query("mesh.test", "SOA", qclass=254)
    yield case("class-none-refused", q, reply(q, rcode=5, aa=False))
    q = query(SLOT, qclass="*")
    yield case("class-any-answered-without-aa", q, reply(q, aa=False, answer=SLOT_ANSWER))
    for name in ("id.server", "HOSTNAME.bind"):
        q = query(name, qclass="CH")
        yield case(f"chaos-{name.lower()}", q, reply(q, answer=[
            txt(name, 0, b"node-1.mesh.test", rclass=CLASS.CH)]))
    for name in ("version.bind", "version.server"):
        q = query(name, qclass="CH")
        yield case(f"chaos-{name}", q, reply(q, answer=[
            txt(name, 0, b"dmfdns 0.1", rclass=CLASS.CH)]))
        yield case(f"chaos-{name}-hidden-refused", q, reply(q, rcode=5, aa=False),
                   responder="bare")
    q = query("id.server", "A", qclass="CH")
    yield case("chaos-other-type-nodata", q, reply(q))
    q = query("authors.bind", qclass="CH")
    yield case("chaos-other-name-refused", q, reply(q, rcode=5, aa=False))
    q = query("mesh.test", "SOA", edns=opt(version=1))
    yield case("edns-version-1-badvers", q,
               reply(q, rcode=16, aa=False, edns=our_opt(ext_rcode=1)))
    q = query("mesh.test", "SOA", edns=opt(version=1, do=True, flags=0x40,
                                            options=[EDNSOption(100, b"x")]))
    yield case("badvers-keeps-do-drops-mbz-and-options", q,
               reply(q, rcode=16, aa=False, edns=our_opt(do=True, ext_rcode=1)))
    q = query("mesh.test", "SOA", edns=opt(options=[EDNSOption(100, b"abc")]))
    yield case("unknown-option-ignored-not-echoed", q,
               reply(q, answer=[soa(ttl=3600)], edns=our_opt()))
    q = query("mesh.test", "SOA", edns=opt(flags=0x40))
    yield case("unknown-edns-flag-not-echoed", q,
               reply(q, answer=[soa(ttl=3600)], edns=our_opt()))
    q = query("mesh.test", "SOA", edns=opt(options=[EDNSOption(3, b"")]))
    yield case("nsid-when-requested", q,
               reply(q, answer=[soa(ttl=3600)], edns=our_opt(options=[
                   EDNSOption(3, b"node-1")])))
    yield case("nsid-not-configured", q, reply(q, answer=[soa(ttl=3600)], edns=our_opt()),
               responder="bare")
    client_cookie = bytes.fromhex("2464c4abcf10c957")
    q = query("mesh.test", "SOA", edns=opt(options=[EDNSOption(10, client_cookie)]))
    yield case("client-cookie-gets-server-cookie", q, reply(q, answer=[soa(ttl=3600)],
               edns=our_opt(options=[server_cookie(client_cookie)])))
    yield case("cookie-ignored-without-secret", q,
               reply(q, answer=[soa(ttl=3600)], edns=our_opt()), responder="bare")
    stale = client_cookie + bytes(16)
    q = query("mesh.test", "SOA", edns=opt(options=[EDNSOption(10, stale)]))
    yield case("bad-server-cookie-gets-a-fresh-one-not-badcookie", q, reply(
        q, answer=[soa(ttl=3600)], edns=our_opt(options=[server_cookie(client_cookie)])))
    q = query("nope.mesh.test", edns=opt(options=[EDNSOption(3, b""),
                                                  EDNSOption(10, client_cookie)]))
    yield case("options-also-on-negative-answers", q, reply(
        q, rcode=3, authority=[soa()], edns=our_opt(options=[
            EDNSOption(3, b"node-1"), server_cookie(client_cookie)])))
    for length in (5, 9, 15, 41):
        q = query("mesh.test", "SOA", edns=opt(options=[EDNSOption(10, b"c" * length)]))
        yield case(f"cookie-length-{length}-formerr", q,
                   reply(q, rcode=1, aa=False, edns=our_opt()))
    q = query(BIG)
    yield case("udp-without-edns-truncates-at-512", q, reply(q, tc=True), max_udp=1232)
    q = query(BIG, edns=opt(4096))
    yield case("udp-truncates-at-server-max-keeping-opt", q,
               reply(q, tc=True, edns=our_opt()), max_udp=1232)
    q = query(BIG, edns=opt(4096))
    yield case("udp-fits-when-both-sides-allow", q,
               reply(q, answer=BIG_ANSWER, edns=our_opt()), max_udp=4096)
    q = query(BIG, edns=opt(1500))
    yield case("udp-limit-is-the-client-payload", q, reply(q, tc=True, edns=our_opt()),
               max_udp=4096)
    q = query(BIG)
    yield case("tcp-never-truncates", q, reply(q, answer=BIG_ANSWER), max_udp=None)
    q = query(SLOT, edns=opt(100))
    yield case("payload-below-512-counts-as-512", q,
               reply(q, answer=SLOT_ANSWER, edns=our_opt()), max_udp=1232)
    q = query("huge.mesh.test")
    yield case("tcp-over-65535-is-servfail", q, reply(q, rcode=2, aa=False), max_udp=None)


@pytest.mark.parametrize("q, expected, max_udp, responder", list(cases()))
def test_response_bytes(q, expected, max_udp, responder):
    got = RESPONDERS[responder].respond(q, now=NOW, max_udp=max_udp, client=CLIENT)
    assert got == expected, (DNSRecord.parse(got) if got and len(got) >= 12 else got)


def two_opts(owner_root=True) -> bytes:
    q = query("mesh.test", "SOA", edns=opt())
    extra = (b"\x00" if owner_root else b"\x01x\x00") + b"\x00\x29\x10\x00" + bytes(6)
    return q[:10] + b"\x00\x02" + q[12:] + extra


@pytest.mark.parametrize("packet", [
    two_opts(),
    query("mesh.test", "SOA")[:10] + b"\x00\x01" + query("mesh.test", "SOA")[12:]
    + b"\x01x\x00\x00\x29\x10\x00" + bytes(6),
    query("mesh.test", "SOA")[:10] + b"\x00\x01" + query("mesh.test", "SOA")[12:]
    + b"\x00\x00\x29\x10\x00" + bytes(4) + b"\x00\x03\x00\x0a\x00",
], ids=["two-opts", "opt-owner-not-root", "option-overruns-rdata"])
def test_bad_opt_is_formerr_with_an_opt(packet):
    got = RESPONDERS["default"].respond(packet, now=NOW, max_udp=1232)
    parsed = DNSRecord.parse(got)
    assert parsed.header.rcode == 1 and not parsed.header.aa
    opts = [rr for rr in parsed.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) == 1 and opts[0].rdata == [] and opts[0].edns_len == 1232


@pytest.mark.parametrize("packet", [b"", b"\x12", bytes(11)])
def test_runts_get_no_answer(packet):
    assert RESPONDERS["default"].respond(packet, now=NOW, max_udp=1232) is None


def test_responses_get_no_answer():
    response = RESPONDERS["default"].respond(query(SLOT), now=NOW, max_udp=1232)
    assert RESPONDERS["default"].respond(response, now=NOW, max_udp=1232) is None
    q = bytearray(query("mesh.test", "SOA"))
    q[2] |= 0x80
    assert RESPONDERS["default"].respond(bytes(q), now=NOW, max_udp=1232) is None


def test_soa_serial_grows_with_every_store_change():
    store = build_store()
    responder = Responder(ZONES, store, SETTINGS)

    def serial():
        got = DNSRecord.parse(responder.respond(query("mesh.test", "SOA"), now=NOW,
                                                max_udp=1232))
        return got.rr[0].rdata.times[0]

    before = serial()
    store.put("new.mesh.test", "v", expiry=NOW + 60, now=NOW)
    after = serial()
    assert after == (before + 1) % 2**32 and after == 2024010101 + store.generation()


def test_serial_wraps_modulo_2_to_the_32():
    zone = parse_zone(MESH.replace("2024010101", "4294967295"))
    store = MemoryStore()
    store.put("a.mesh.test", "v", expiry=NOW + 60, now=NOW)
    got = DNSRecord.parse(Responder([zone], store, SETTINGS).respond(
        query("mesh.test", "SOA"), now=NOW, max_udp=1232))
    assert got.rr[0].rdata.times[0] == 0


def test_a_value_appears_and_expires_with_time():
    store = MemoryStore()
    responder = Responder(ZONES, store, SETTINGS)
    name = "slot-1.mb-fff.mesh.test"
    store.put(name, "m", expiry=NOW + 10, now=NOW)
    live = DNSRecord.parse(responder.respond(query(name), now=NOW + 9, max_udp=1232))
    assert live.header.rcode == 0 and live.rr[0].ttl == 1
    gone = DNSRecord.parse(responder.respond(query(name), now=NOW + 10, max_udp=1232))
    assert gone.header.rcode == 3 and not gone.rr
    parent = DNSRecord.parse(responder.respond(query("mb-fff.mesh.test"), now=NOW + 10,
                                               max_udp=1232))
    assert parent.header.rcode == 3                 # no live descendant any more


def test_counters_count_queries_responses_and_truncations():
    responder = Responder(ZONES, STORE, SETTINGS)
    responder.respond(query(SLOT), now=NOW, max_udp=1232)                    # lean path
    responder.respond(query("nope.mesh.test"), now=NOW, max_udp=1232, proto="tcp")
    responder.respond(query(BIG), now=NOW, max_udp=1232)
    responder.respond(query("example.com", "A"), now=NOW, max_udp=1232)
    responder.respond(b"runt", now=NOW, max_udp=1232)
    c = responder.counters
    assert c.query_counts() == {("udp", "TXT"): 2, ("tcp", "TXT"): 1, ("udp", "A"): 1}
    assert c.response_counts() == {("udp", "NOERROR"): 2, ("tcp", "NXDOMAIN"): 1,
                                   ("udp", "REFUSED"): 1}
    assert c.truncated_counts() == {"udp": 1}
    assert c.dropped_counts() == {"runt": 1}
    sizes = c.response_sizes()["udp"]
    assert sizes.count == 3 and sizes.buckets[-1] == (float("inf"), 3)


def test_settings_are_validated():
    for bad in (dict(answer_ttl=-1), dict(edns_payload=100), dict(cookie_secret=b"short"),
                dict(nsid=b"")):
        with pytest.raises(ValueError):
            ResponderSettings(**bad)
    with pytest.raises(ValueError):
        Responder(ZONES + [parse_zone(MESH)], STORE, SETTINGS)


@given(st.binary(min_size=0, max_size=300))
def test_any_bytes_get_none_or_a_response_with_the_same_id(packet):
    got = RESPONDERS["default"].respond(packet, now=NOW, max_udp=1232)
    if got is None:
        assert len(packet) < 12 or packet[2] & 0x80
    else:
        assert got[:2] == packet[:2] and got[2] & 0x80 and len(got) <= 1232


@given(st.binary(min_size=12, max_size=12).map(lambda h: h[:2] + bytes([h[2] & 0x7F]) + h[3:4]
                                               + b"\x00\x01\x00\x00\x00\x00\x00\x00"),
       st.lists(st.binary(min_size=0, max_size=70), max_size=6), st.integers(0, 65535),
       st.integers(0, 65535))
def test_odd_questions_never_break_the_responder(header, labels, qtype, qclass):
    name = b"".join(bytes([min(len(label), 63)]) + label[:63] for label in labels) + b"\x00"
    packet = header + name + struct.pack(">HH", qtype, qclass)
    got = RESPONDERS["default"].respond(packet, now=NOW, max_udp=1232)
    assert got is not None and got[:2] == packet[:2] and got[2] & 0x80
    assert got[3] & 0xF in (0, 1, 3, 4, 5)      # NOERROR FORMERR NXDOMAIN NOTIMP REFUSED


def test_the_root_and_names_with_dots_inside_labels_are_refused_or_nxdomain():
    root = bytes(DNSRecord(DNSHeader(id=1), q=DNSQuestion(DNSLabel(()), QTYPE.SOA)).pack())
    assert DNSRecord.parse(RESPONDERS["default"].respond(
        root, now=NOW, max_udp=1232)).header.rcode == 5
    odd = DNSLabel((b"slot-3.mb-abc123", b"mesh", b"test"))
    q = bytes(DNSRecord(DNSHeader(id=2), q=DNSQuestion(odd, QTYPE.TXT)).pack())
    got = DNSRecord.parse(RESPONDERS["default"].respond(q, now=NOW, max_udp=1232))
    assert got.header.rcode == 3 and not got.rr


# The pure helpers behind cookies and counters.

def cookie_only_query(cookie: bytes) -> bytes:
    record = DNSRecord(DNSHeader(id=9, bitmap=0))
    record.add_ar(opt(1232, options=[EDNSOption(10, cookie)]))
    return bytes(record.pack())


def test_a_query_for_a_server_cookie_gets_noerror_and_one():
    # RFC 7873 section 5.4: QDCOUNT 0 with a COOKIE option.
    client = bytes.fromhex("2464c4abcf10c957")
    for sent in (client, client + bytes(16)):
        got = RESPONDERS["default"].respond(cookie_only_query(sent), now=NOW, max_udp=1232,
                                            client=CLIENT)
        assert got == reply(cookie_only_query(sent), aa=False, question=False,
                            edns=our_opt(options=[server_cookie(client)]))
    without = RESPONDERS["bare"].respond(cookie_only_query(client), now=NOW, max_udp=1232)
    assert DNSRecord.parse(without).header.rcode == 1          # cookies off: FORMERR
    no_cookie = DNSRecord(DNSHeader(id=9, bitmap=0))
    no_cookie.add_ar(opt(1232))
    got = RESPONDERS["default"].respond(bytes(no_cookie.pack()), now=NOW, max_udp=1232)
    assert DNSRecord.parse(got).header.rcode == 1


def test_a_failing_decision_is_servfail_counted_and_reported():
    class Broken(MemoryStore):
        def packed_txt(self, name):
            raise RuntimeError("a bug")

    reported = []
    responder = Responder(ZONES, Broken(), SETTINGS, on_error=reported.append)
    q = query("_dmp.mesh.test", edns=opt())        # static data: the dnslib path
    got = responder.respond(q, now=NOW, max_udp=1232, proto="tcp")
    assert got == reply(q, rcode=2, aa=False, edns=our_opt())
    assert reported == ["tcp"] and responder.counters.errors == {"tcp": 1}


def test_siphash24_reference_vector():
    # SipHash paper, appendix A: key 00..0f, message 00..0e.
    assert cookies.siphash24(bytes(range(16)), bytes(range(15))).hex() == "e545be4961ca29a1"


@pytest.mark.parametrize("stamp, expected", [
    (1559731985, "010000005cf79f111f8130c3eee29480"),      # RFC 9018 appendix A.1
    (1559734385, "010000005cf7a871d4a564a1442aca77"),      # RFC 9018 appendix A.2
])
def test_rfc9018_server_cookie_vectors(stamp, expected):
    client = bytes.fromhex("2464c4abcf10c957")
    ip = cookies.client_address(("198.51.100.100", 53))
    assert cookies.server_cookie(SECRET, client, ip, stamp).hex() == expected


def test_cookie_verification_window_and_binding():
    client, ip = bytes.fromhex("2464c4abcf10c957"), cookies.client_address(CLIENT)
    option = client + cookies.server_cookie(SECRET, client, ip, NOW)
    assert cookies.verify(SECRET, option, ip, NOW + 3600)
    assert not cookies.verify(SECRET, option, ip, NOW + 3601)          # over an hour old
    assert not cookies.verify(SECRET, option, ip, NOW - 301)           # from the future
    assert not cookies.verify(SECRET, option, cookies.client_address("192.0.2.1"), NOW)
    assert not cookies.verify(bytes(16), option, ip, NOW)
    assert not cookies.verify(SECRET, option[:-1], ip, NOW)


def test_client_address_forms():
    assert cookies.client_address("::1") == bytes(15) + b"\x01"
    assert cookies.client_address(("fe80::1%eth0", 53, 0, 2)) == bytes.fromhex(
        "fe800000000000000000000000000001")
    assert cookies.client_address(None) == b"" and cookies.client_address("nohost") == b""


def test_histogram_buckets_are_cumulative_and_durations_come_from_transports():
    from dmfdns.dns.counters import DnsCounters
    counters = DnsCounters()
    for size in (50, 100, 101, 70000):
        counters.count_response("udp", 0, size)
    counters.observe_duration("udp", 0.0003)
    sizes = counters.response_sizes()["udp"]
    assert dict(sizes.buckets)[100] == 2 and dict(sizes.buckets)[200] == 3
    assert sizes.buckets[-1] == (float("inf"), 4) and sizes.sum == 70251
    assert dict(counters.durations()["udp"].buckets)[0.0005] == 1
    counters.count_query("udp", 65000)
    assert counters.query_counts() == {("udp", "other"): 1}


def test_counters_of_several_processes_add_up_through_snapshots():
    import json
    from dmfdns.dns.counters import DnsCounters
    one, two = DnsCounters(), DnsCounters()
    for counters, n in ((one, 1), (two, 2)):
        for _ in range(n):
            counters.count_answer("udp", 16, 0, 120)
            counters.observe_duration("udp", 0.001)
            counters.count_rrl("dropped")
            counters.count_error("tcp")
        counters.cache_hits += n
    total = DnsCounters()
    total.add(json.loads(json.dumps(one.snapshot())))
    total.add(json.loads(json.dumps(two.snapshot())))
    assert total.query_counts() == {("udp", "TXT"): 3}
    assert total.response_counts() == {("udp", "NOERROR"): 3}
    assert total.response_sizes()["udp"].count == 3 and total.durations()["udp"].count == 3
    assert total.response_sizes()["udp"].sum == 360
    assert total.rrl == {"dropped": 3} and total.errors == {"tcp": 3}
    assert total.cache_counts()["hits"] == 3
