"""Differential test: the hand-written lean path and the dnslib path give the same bytes, or
the lean path declines (returns None) and the dnslib path answers."""

import struct
import timeit

import pytest
from dnslib import CLASS, EDNS0, QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord, EDNSOption
from hypothesis import given, settings, strategies as st

from dmfdns.dns.lean import LeanPath
from dmfdns.dns.responder import Responder, ResponderSettings
from dmfdns.dns.zone import parse_zone
from dmfdns.store.memory_store import MemoryStore

NOW = 1_700_000_000.0
ZONE = """\
$ORIGIN mesh.test.
$TTL 3600
@    SOA ns1 hostmaster 1 3600 600 604800 60
@    NS  ns1
ns1  A   192.0.2.53
_dmp TXT "static"
"""
OTHER_ZONE = """\
$ORIGIN other.example.
$TTL 300
@ SOA ns1.mesh.test. h.mesh.test. 5 3600 600 604800 30
@ NS ns1.mesh.test.
"""
# name -> [(value, seconds to live)]
CONTENT = {
    "slot-1.mb-aaaa.mesh.test": [("hello", 3600)],
    "slot-2.mb-aaaa.mesh.test": [("a" * 300, 120), ("b", 10), ("c" * 40, 5000)],
    "chunk-0001-k.mesh.test": [("z" * 700, 90), ("y" * 200, 3600)],
    "big.mesh.test": [(f"{i:02d}" + "q" * 220, 600 + i) for i in range(8)],
    "mixed.other.example": [("in another zone", 40)],
    "_dmp.mesh.test": [("stored beside static", 3600)],
    "mesh.test": [("at the apex", 3600)],
    "fading.mesh.test": [("short", 2), ("shorter", 1)],
    "elsewhere.test": [("out of every zone", 3600)],
}
NAMES = sorted(CONTENT) + ["mb-aaaa.mesh.test", "nope.mesh.test", "ns1.mesh.test",
                           "other.example", "example.com", "test", "ent.mesh.test",
                           "in.ent.mesh.test", "x.in.ent.mesh.test", "gone.other.example"]


def make_store() -> MemoryStore:
    store = MemoryStore()
    for name, values in CONTENT.items():
        for value, ttl in values:
            store.put(name, value, expiry=NOW + ttl, now=NOW)
    return store


STORE = make_store()
NESTED_ZONE = """\
$ORIGIN in.ent.mesh.test.
$TTL 300
@ SOA ns1.mesh.test. h.mesh.test. 9 3600 600 604800 20
@ NS ns1.mesh.test.
"""
ZONES = [parse_zone(ZONE), parse_zone(OTHER_ZONE), parse_zone(NESTED_ZONE)]
RESPONDER = Responder(ZONES, STORE, ResponderSettings(nsid=b"n", cookie_secret=bytes(16),
                                                      server_id="n1", version="v"))
LEAN = LeanPath(ZONES, STORE, answer_ttl=60, edns_payload=1232)


def build(name, qtype=QTYPE.TXT, qclass=CLASS.IN, *, bits=0x0100, edns=None, qid=77):
    record = DNSRecord(DNSHeader(id=qid, bitmap=bits), q=DNSQuestion(name, qtype, qclass))
    if edns is not None:
        record.add_ar(edns)
    return bytes(record.pack())


def _flagged(payload, flags):
    opt = EDNS0(udp_len=payload)
    opt.ttl |= flags
    return opt


def with_mbz(opt):
    opt.ttl |= 0x7FFF          # every flag bit but DO: must not be echoed
    return opt


def lean_bytes(query, now=NOW, max_udp=1232):
    answered = LEAN.answer(query, now, max_udp)
    return None if answered is None else answered[0]


def both(query, now=NOW, max_udp=1232):
    lean = lean_bytes(query, now, max_udp)
    slow = RESPONDER.respond_dnslib(query, now=now, max_udp=max_udp, client="192.0.2.9")
    return lean, slow


def check(query, now=NOW, max_udp=1232):
    """The property: lean declines or agrees byte for byte; respond() equals the slow path."""
    lean, slow = both(query, now, max_udp)
    if lean is not None:
        assert lean == slow, (DNSRecord.parse(lean), DNSRecord.parse(slow))
    assert RESPONDER.respond(query, now=now, max_udp=max_udp, client="192.0.2.9") == slow
    return lean


ANSWERED = [
    ("plain", build("slot-1.mb-aaaa.mesh.test"), {}),
    ("0x20", build("SlOt-2.Mb-AaAa.MESH.test"), {}),
    ("split-values-and-ttl-min", build("slot-2.mb-aaaa.mesh.test"), {}),
    ("edns", build("chunk-0001-k.mesh.test", edns=EDNS0(udp_len=4096)), {}),
    ("edns-do", build("chunk-0001-k.mesh.test", edns=EDNS0(udp_len=1232, flags="do")), {}),
    ("edns-mbz-flags", build("slot-1.mb-aaaa.mesh.test", edns=with_mbz(EDNS0(udp_len=1232))),
     {}),
    ("no-rd-cd-ad-z", build("slot-1.mb-aaaa.mesh.test", bits=0x0070), {}),
    ("tc-and-aa-in-query", build("slot-1.mb-aaaa.mesh.test", bits=0x0600), {}),
    ("id-zero", build("slot-1.mb-aaaa.mesh.test", qid=0), {}),
    ("id-max", build("slot-1.mb-aaaa.mesh.test", qid=65535), {}),
    ("tcp-big", build("big.mesh.test"), dict(max_udp=None)),
    ("udp-big-with-room", build("big.mesh.test", edns=EDNS0(udp_len=4096)),
     dict(max_udp=4096)),
    ("udp-too-big-truncated", build("big.mesh.test"), {}),
    ("udp-too-big-for-client-truncated", build("big.mesh.test", edns=EDNS0(udp_len=1400)),
     dict(max_udp=4096)),
    ("udp-too-big-do-0x20-truncated",
     build("BiG.mesh.TEST", edns=EDNS0(udp_len=1232, flags="do"), bits=0x0010), {}),
    ("other-zone", build("mixed.other.example"), {}),
    ("later-fewer-values", build("slot-2.mb-aaaa.mesh.test"), dict(now=NOW + 11)),
    ("sub-second-ttl", build("fading.mesh.test"), dict(now=NOW + 1.5)),
    ("payload-below-512", build("slot-1.mb-aaaa.mesh.test", edns=EDNS0(udp_len=10)), {}),
    ("nxdomain", build("nope.mesh.test"), {}),
    ("nxdomain-0x20-no-soa-compression-match", build("NoPe.MESH.Test"), {}),
    ("nxdomain-edns-do", build("nope.mesh.test", edns=EDNS0(udp_len=4096, flags="do")), {}),
    ("nxdomain-deep", build("a.b.c.d.nope.mesh.test", QTYPE.AAAA), {}),
    ("nxdomain-other-zone-soa", build("gone.other.example"), {}),
    ("empty-non-terminal", build("mb-aaaa.mesh.test"), {}),
    ("empty-non-terminal-a-qname-minimisation", build("mb-aaaa.mesh.test", QTYPE.A), {}),
    ("name-above-a-zone-apex", build("ent.mesh.test"), {}),
    ("all-expired-is-nxdomain", build("fading.mesh.test"), dict(now=NOW + 2)),
    ("nodata-other-type-at-stored-name", build("slot-1.mb-aaaa.mesh.test", QTYPE.A), {}),
    ("nodata-unknown-type", build("slot-1.mb-aaaa.mesh.test", 65280), {}),
    ("tcp-negative", build("nope.mesh.test"), dict(max_udp=None)),
    ("nxdomain-below-the-soa-mname", build("a.ns1.mesh.test"), {}),
    ("nxdomain-below-the-soa-mname-other-case", build("a.NS1.mesh.test"), {}),
    ("nxdomain-at-the-soa-rname", build("hostmaster.mesh.test"), {}),
    ("nxdomain-below-the-soa-rname", build("x.y.hostmaster.mesh.test", QTYPE.A), {}),
    ("nxdomain-other-zone-below-its-mname-name", build("ns1.mesh.test.other.example"), {}),
]
DECLINED = [
    ("any", build("slot-1.mb-aaaa.mesh.test", QTYPE.ANY), {}),
    ("class-any", build("slot-1.mb-aaaa.mesh.test", qclass=255), {}),
    ("chaos", build("id.server", qclass=CLASS.CH), {}),
    ("cookie", build("slot-1.mb-aaaa.mesh.test",
                     edns=EDNS0(udp_len=1232, opts=[EDNSOption(10, b"12345678")])), {}),
    ("nsid", build("slot-1.mb-aaaa.mesh.test",
                   edns=EDNS0(udp_len=1232, opts=[EDNSOption(3, b"")])), {}),
    ("badvers", build("slot-1.mb-aaaa.mesh.test", edns=EDNS0(udp_len=1232, version=1)), {}),
    ("static-data-at-name", build("_dmp.mesh.test"), {}),
    ("apex", build("mesh.test"), {}),
    ("apex-soa", build("mesh.test", QTYPE.SOA), {}),
    ("static-glue-name", build("ns1.mesh.test", QTYPE.AAAA), {}),
    ("out-of-zone-even-if-stored", build("elsewhere.test"), {}),
    ("above-every-zone", build("test"), {}),
    ("axfr", build("nope.mesh.test", QTYPE.AXFR), {}),
    ("qtype-opt", build("nope.mesh.test", 41), {}),
    ("notify", build("slot-1.mb-aaaa.mesh.test", bits=4 << 11), {}),
    ("response", build("slot-1.mb-aaaa.mesh.test", bits=0x8000), {}),
    ("trailing-byte", build("slot-1.mb-aaaa.mesh.test") + b"\x00", {}),
    ("truncated", build("slot-1.mb-aaaa.mesh.test")[:-1], {}),
    ("runt", b"\x00" * 11, {}),
]


@pytest.mark.parametrize("query, kw", [pytest.param(q, kw, id=i) for i, q, kw in ANSWERED])
def test_lean_answers_the_common_shape_like_dnslib(query, kw):
    assert check(query, **kw) is not None


@pytest.mark.parametrize("query, kw", [pytest.param(q, kw, id=i) for i, q, kw in DECLINED])
def test_lean_declines_everything_else(query, kw):
    assert check(query, **kw) is None


def test_a_label_holding_a_dot_is_not_confused_with_two_labels():
    name = DNSLabel((b"slot-1.mb-aaaa", b"mesh", b"test"))
    record = DNSRecord(DNSHeader(id=1), q=DNSQuestion(name, QTYPE.TXT))
    assert check(bytes(record.pack())) is None


# Hypothesis: names, case, flags, EDNS variants, limits and time.

def flip_case(name, mask):
    return "".join(c.upper() if (mask >> (i % 60)) & 1 else c for i, c in enumerate(name))


edns_variants = st.one_of(
    st.none(),
    st.builds(_flagged,
              st.integers(0, 65535), st.integers(0, 0xFFFF)),
    st.builds(lambda p, v: EDNS0(udp_len=p, version=v), st.integers(0, 65535),
              st.integers(0, 255)),
    st.builds(lambda code, data: EDNS0(udp_len=1232, opts=[EDNSOption(code, data)]),
              st.sampled_from([3, 8, 10, 11, 12, 15, 100, 65001]), st.binary(max_size=40)),
)
names = st.one_of(st.sampled_from(NAMES),
                  st.lists(st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True), min_size=1,
                           max_size=4).map(lambda labels: ".".join(labels + ["mesh.test"])))
qtypes = st.one_of(st.just(QTYPE.TXT), st.sampled_from([QTYPE.A, QTYPE.ANY, QTYPE.SOA,
                                                         QTYPE.NS, QTYPE.AXFR, 41, 1000]),
                   st.integers(0, 65535))
qclasses = st.one_of(st.just(CLASS.IN), st.sampled_from([CLASS.CH, 255, 254, 4]))


@settings(max_examples=250)
@given(names, st.integers(0, 2**60 - 1), qtypes, qclasses, st.integers(0, 0xFFFF),
       edns_variants, st.sampled_from([None, 512, 1232, 1400, 4096]),
       st.floats(0, 5200), st.integers(0, 65535))
def test_differential(name, case_mask, qtype, qclass, bits, edns, max_udp, later, qid):
    if bits & 0x7:                                      # mostly queries, some responses
        bits &= 0x7FFF
    query = build(flip_case(name, case_mask), qtype, qclass, bits=bits, edns=edns, qid=qid)
    check(query, now=NOW + later, max_udp=max_udp)


@given(st.sampled_from(sorted(CONTENT)), st.integers(0, 2**60 - 1), st.floats(0, 5200),
       st.sampled_from([None, 1232, 4096]), st.booleans(), st.integers(0, 0x0171),
       st.integers(0, 0xFFFF))
def test_differential_on_the_common_shape(name, case_mask, later, max_udp, with_edns, bits,
                                          edns_flags):
    edns = _flagged(4096, edns_flags) if with_edns else None
    query = build(flip_case(name, case_mask), bits=bits, edns=edns)
    check(query, now=NOW + later, max_udp=max_udp)


@given(st.binary(min_size=12, max_size=120))
def test_lean_never_raises_on_garbage(packet):
    lean = lean_bytes(packet)
    if lean is not None:
        assert lean == RESPONDER.respond_dnslib(packet, now=NOW, max_udp=1232)


def test_lean_is_much_cheaper_than_dnslib():
    query = build("slot-2.mb-aaaa.mesh.test", edns=EDNS0(udp_len=1232))
    lean = min(timeit.repeat(lambda: RESPONDER.respond(query, now=NOW, max_udp=1232),
                             number=300, repeat=5))
    slow = min(timeit.repeat(lambda: RESPONDER.respond_dnslib(query, now=NOW, max_udp=1232),
                             number=300, repeat=5))
    assert lean * 4 < slow, (lean / 300 * 1e6, slow / 300 * 1e6)


def test_ttl_header_fields_of_a_lean_answer():
    query = build("slot-2.mb-aaaa.mesh.test")
    lean = lean_bytes(query, NOW + 1)
    # Three records, each c00c TXT IN with TTL min(60, 10 - 1) = 9.
    head = struct.pack(">HHHI", 0xC00C, 16, 1, 9)
    assert lean.count(head) == 3 and lean[6:8] == b"\x00\x03"


def test_packed_soa_names_are_reused_only_for_the_same_shape():
    """The SOA names are packed once per (question end, shared suffixes): every question,
    answered after all the others by one lean path, equals a fresh lean path's answer."""
    shared = LeanPath(ZONES, STORE, answer_ttl=60, edns_payload=1232)
    questions = [build(name, qtype) for name in
                 ["nope.mesh.test", "a.ns1.mesh.test", "b.ns1.mesh.test", "a.NS1.mesh.test",
                  "ab.ns1.mesh.test", "hostmaster.mesh.test", "a.hostmaster.mesh.test",
                  "NOPE.mesh.test", "nope.MESH.test", "x.gone.other.example",
                  "ns1.mesh.test.other.example", "z.in.ent.mesh.test"]
                 for qtype in (QTYPE.TXT, QTYPE.A)]
    for query in questions + questions[::-1]:
        fresh = LeanPath(ZONES, STORE, answer_ttl=60, edns_payload=1232)
        assert shared.answer(query, NOW, 1232) == fresh.answer(query, NOW, 1232)
        check(query)
