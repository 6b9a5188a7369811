"""EDNS(0) Padding of DoT responses (RFC 7830, RFC 8467 block-length padding): only for a
padded query, to a multiple of 468 octets, inside the OPT, never breaking the message."""

import pytest
from dnslib import EDNS0, QTYPE, RR, TXT, DNSRecord, EDNSOption

from dmfdns.dns.padding import BLOCK, pad_response


def query(padded: bool = True, edns: bool = True) -> bytes:
    record = DNSRecord.question("slot-0.mb-0123456789ab.mesh.test", "TXT")
    if edns:
        options = [EDNSOption(12, bytes(20))] if padded else []
        record.add_ar(EDNS0(udp_len=1232, opts=options))
    return record.pack()


def response(values=1, value_size=100, edns=True, tsig=False) -> bytes:
    record = DNSRecord.question("slot-0.mb-0123456789ab.mesh.test", "TXT").reply()
    for index in range(values):
        record.add_answer(RR("slot-0.mb-0123456789ab.mesh.test", QTYPE.TXT, ttl=60,
                             rdata=TXT([bytes([65 + index % 26]) * value_size])))
    if edns:
        record.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(10, bytes(24))]))   # a COOKIE
    if tsig:
        record.add_ar(RR("key.", 250, rdata=TXT(["not really a tsig"])))
    return record.pack()


@pytest.mark.parametrize("values, size", [(1, 10), (1, 100), (3, 255), (9, 200)])
def test_a_padded_query_gets_a_response_padded_to_the_block(values, size):
    plain = response(values, size)
    padded = pad_response(query(), plain)
    assert len(padded) % BLOCK == 0 and len(padded) >= len(plain) + 4
    before, after = DNSRecord.parse(plain), DNSRecord.parse(padded)
    assert after.rr == before.rr and after.q == before.q
    (opt,) = [rr for rr in after.ar if rr.rtype == QTYPE.OPT]
    codes = [option.code for option in opt.rdata]
    assert codes == [10, 12]                                    # the cookie is kept
    assert opt.rdata[1].data == bytes(len(opt.rdata[1].data))   # padding is zeros


def test_every_response_length_lands_on_a_block_boundary():
    lengths = set()
    for size in range(1, 256):
        plain = response(2, size)
        padded = pad_response(query(), plain)
        assert len(padded) % BLOCK == 0 and DNSRecord.parse(padded).rr
        lengths.add(len(padded))
    assert lengths == {BLOCK, 2 * BLOCK}    # hundreds of sizes, two lengths on the wire


@pytest.mark.parametrize("raw", [query(padded=False), query(edns=False), b"", b"\x00" * 5])
def test_no_padding_unless_the_query_was_padded(raw):
    plain = response()
    assert pad_response(raw, plain) is plain


@pytest.mark.parametrize("plain", [response(edns=False), response(tsig=True),
                                   response(250, 255), b"\x00" * 12, b"junk"])
def test_responses_that_cannot_be_padded_safely_go_out_as_they_are(plain):
    assert pad_response(query(), plain) == plain
