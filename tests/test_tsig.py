"""TSIG (RFC 8945) against dnspython as the independent implementation.

dnspython signs requests that ``tsig.verify`` must accept; it validates the responses,
error responses and chained transfer streams that ``tsig`` produces.
"""

import base64
import struct
import time

import dns.message
import dns.flags
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest
from hypothesis import given, settings, strategies as st

from dmfdns.dns import tsig

SECRET = bytes(range(32))
NAME = "xfr-key.example"


def our_key(algorithm="hmac-sha256", secret=SECRET, name=NAME, attached=None):
    return tsig.TsigKey(name, algorithm, secret, attached)


def their_key(algorithm="hmac-sha256", secret=SECRET, name=NAME):
    return dns.tsig.Key(name, secret, dns.name.from_text(algorithm))


def lookup_for(*keys):
    table = {key.name: key for key in keys}
    return table.get


def signed_request(algorithm="hmac-sha256", secret=SECRET, qtype="AXFR", name=NAME):
    query = dns.message.make_query("mesh.test.", qtype)
    query.use_tsig(their_key(algorithm, secret, name))
    return query, query.to_wire()


def unsigned_response(request_wire: bytes, rcode=0) -> bytes:
    """A plain response header + question to ``request_wire`` (TSIG stripped)."""
    verdict = tsig.verify(request_wire, lambda name: None, now=time.time())
    body = verdict.unsigned               # the request has no records besides the TSIG
    ident, _, qdcount = struct.unpack_from(">HHH", body)
    return struct.pack(">HHHHHH", ident, 0x8400 | rcode, qdcount, 0, 0, 0) + body[12:]


@pytest.mark.parametrize("algorithm", sorted(tsig.ALGORITHMS))
def test_dnspython_signed_request_verifies_and_our_response_verifies_there(algorithm):
    attached = {"scopes": ("transfer",)}
    key = our_key(algorithm, attached=attached)
    query, wire = signed_request(algorithm)
    verdict = tsig.verify(wire, lookup_for(key), now=time.time())
    assert verdict.status == "ok", verdict.reason
    assert verdict.key.attached is attached
    assert verdict.request_mac == query.mac
    response = tsig.finish(unsigned_response(wire), verdict, now=time.time())
    parsed = dns.message.from_wire(response, keyring=their_key(algorithm),
                                   request_mac=query.mac)
    assert parsed.had_tsig and parsed.rcode() == dns.rcode.NOERROR


def test_an_unsigned_request_is_unsigned_and_finish_leaves_the_response_alone():
    wire = dns.message.make_query("mesh.test.", "SOA").to_wire()
    verdict = tsig.verify(wire, lookup_for(our_key()), now=time.time())
    assert verdict.status == "unsigned" and verdict.rcode == tsig.NOERROR
    assert verdict.unsigned == wire
    response = unsigned_response(wire)
    assert tsig.finish(response, verdict, now=time.time()) == response


def test_unsigned_part_is_the_request_without_its_tsig():
    query, wire = signed_request()
    verdict = tsig.verify(wire, lookup_for(our_key()), now=time.time())
    plain = dns.message.from_wire(verdict.unsigned)
    assert plain.question == query.question and not plain.additional


def test_wrong_secret_is_badsig_and_dnspython_takes_the_error_response():
    query, wire = signed_request(secret=b"x" * 32)
    verdict = tsig.verify(wire, lookup_for(our_key()), now=time.time())
    assert (verdict.status, verdict.error, verdict.rcode) == ("notauth", tsig.BADSIG, 9)
    response = tsig.finish(unsigned_response(wire), verdict, now=time.time())
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.message.from_wire(response, keyring=their_key(), request_mac=query.mac)
    assert response[3] & 0xF == tsig.NOTAUTH
    record = tsig.find(response)
    assert record.mac == b"" and record.key_name == NAME and record.error == tsig.BADSIG


def test_unknown_key_is_badkey():
    query, wire = signed_request(name="other-key")
    verdict = tsig.verify(wire, lookup_for(our_key()), now=time.time())
    assert (verdict.status, verdict.error) == ("notauth", tsig.BADKEY)
    response = tsig.finish(unsigned_response(wire), verdict, now=time.time())
    with pytest.raises(dns.tsig.PeerBadKey):
        dns.message.from_wire(response, keyring=their_key(name="other-key"),
                              request_mac=query.mac)


def test_algorithm_mismatch_is_badkey():
    query, wire = signed_request(algorithm="hmac-sha512")
    verdict = tsig.verify(wire, lookup_for(our_key("hmac-sha256")), now=time.time())
    assert (verdict.status, verdict.error) == ("notauth", tsig.BADKEY)


def test_time_outside_fudge_is_badtime_signed_with_our_time_in_other_data():
    query, wire = signed_request()
    later = time.time() + 1000
    verdict = tsig.verify(wire, lookup_for(our_key()), now=later)
    assert (verdict.status, verdict.error) == ("notauth", tsig.BADTIME)
    response = tsig.finish(unsigned_response(wire), verdict, now=later)
    with pytest.raises(dns.tsig.PeerBadTime):
        dns.message.from_wire(response, keyring=their_key(), request_mac=query.mac)
    record = tsig.find(response)
    assert record.time_signed == verdict.record.time_signed
    assert int.from_bytes(record.other, "big") == int(later)
    # Signed: it verifies as a response to the request, apart from the error it reports.
    back = tsig.verify(response, lookup_for(our_key()), now=later, request_mac=query.mac)
    assert back.error == tsig.BADTIME


def test_time_exactly_at_the_fudge_edge_is_accepted():
    query, wire = signed_request()
    signed_at = tsig.find(wire).time_signed
    verdict = tsig.verify(wire, lookup_for(our_key()), now=signed_at + 300)
    assert verdict.status == "ok"
    assert tsig.verify(wire, lookup_for(our_key()), now=signed_at + 301).error == tsig.BADTIME


def test_a_tampered_message_is_badsig():
    _, wire = signed_request()
    tampered = bytearray(wire)
    tampered[2] ^= 0x01                    # flip RD
    verdict = tsig.verify(bytes(tampered), lookup_for(our_key()), now=time.time())
    assert verdict.error == tsig.BADSIG


def test_tsig_not_last_is_formerr():
    query = dns.message.make_query("mesh.test.", "SOA")
    query.use_tsig(their_key())
    wire = query.to_wire()
    record = tsig.find(wire)
    rr = wire[record.start:]
    extra = b"\x00" + struct.pack(">HHIH", 16, 1, 0, 2) + b"\x01a"
    arcount = struct.unpack_from(">H", wire, 10)[0]
    moved = wire[:10] + struct.pack(">H", arcount + 1) + wire[12:record.start] + rr + extra
    verdict = tsig.verify(moved, lookup_for(our_key()), now=time.time())
    assert verdict.status == "formerr" and verdict.rcode == tsig.FORMERR


def test_two_tsigs_are_formerr():
    _, wire = signed_request()
    record = tsig.find(wire)
    doubled = tsig._append(wire, wire[record.start:])
    assert tsig.verify(doubled, lookup_for(our_key()), now=time.time()).status == "formerr"


def test_mac_size_out_of_range_is_formerr():
    _, wire = signed_request()
    record = tsig.find(wire)
    short = tsig._rr(record.key_wire, record.algorithm_wire, record.time_signed,
                     record.fudge, record.mac[:4], record.original_id, 0, b"")
    stripped = tsig._strip(wire, record)
    verdict = tsig.verify(tsig._append(stripped, short), lookup_for(our_key()),
                          now=time.time())
    assert verdict.status == "formerr"


def test_a_truncated_mac_that_verifies_is_badtrunc():
    _, wire = signed_request()
    record = tsig.find(wire)
    cut = tsig._rr(record.key_wire, record.algorithm_wire, record.time_signed,
                   record.fudge, record.mac[:16], record.original_id, 0, b"")
    verdict = tsig.verify(tsig._append(tsig._strip(wire, record), cut),
                          lookup_for(our_key()), now=time.time())
    assert (verdict.status, verdict.error) == ("notauth", tsig.BADTRUNC)


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(min_value=0, max_value=200), flip=st.integers(0, 255),
       where=st.integers(0, 200))
def test_truncated_or_damaged_tsig_never_raises(cut, flip, where):
    _, wire = signed_request()
    damaged = bytearray(wire[:max(12, len(wire) - cut)])
    if where < len(damaged):
        damaged[where] ^= flip
    verdict = tsig.verify(bytes(damaged), lookup_for(our_key()), now=time.time())
    assert verdict.status in ("unsigned", "ok", "formerr", "notauth")
    if verdict.status == "notauth":
        response = tsig.finish(unsigned_response(wire), verdict, now=time.time())
        assert response[3] & 0xF == tsig.NOTAUTH


def test_our_signed_request_verifies_in_dnspython_and_its_response_in_ours():
    request = dns.message.make_query("mesh.test.", "SOA")
    request.set_opcode(dns.opcode.NOTIFY)
    signed, mac = tsig.sign(request.to_wire(), our_key(), now=time.time())
    parsed = dns.message.from_wire(signed, keyring=their_key())
    assert parsed.had_tsig and parsed.mac == mac
    reply = dns.message.make_response(parsed)
    reply_wire = reply.to_wire()
    verdict = tsig.verify(reply_wire, lookup_for(our_key()), now=time.time(),
                          request_mac=mac)
    assert verdict.status == "ok"
    wrong = tsig.verify(reply_wire, lookup_for(our_key()), now=time.time(),
                        request_mac=b"\x00" * 32)
    assert wrong.error == tsig.BADSIG


def _axfr_messages(count):
    """``count`` plain response messages of one transfer (same id, SOA / TXT records)."""
    soa = dns.rrset.from_text("mesh.test.", 60, "IN", "SOA",
                              "ns1.mesh.test. host.mesh.test. 7 3600 600 86400 60")
    for index in range(count):
        message = dns.message.Message(id=4242)
        message.flags |= dns.flags.QR | dns.flags.AA
        if index in (0, count - 1):
            message.answer.append(soa)
        message.answer.append(dns.rrset.from_text(f"n{index}.mesh.test.", 60, "IN", "TXT",
                                                  f'"value {index}"'))
        yield message.to_wire()


def test_stream_signer_chains_macs_that_dnspython_validates():
    query, wire = signed_request()
    verdict = tsig.verify(wire, lookup_for(our_key()), now=time.time())
    signer = tsig.StreamSigner(verdict)
    ctx = None
    messages = [signer.sign(message, now=time.time()) for message in _axfr_messages(5)]
    for message in messages:
        parsed = dns.message.from_wire(message, keyring=their_key(), request_mac=query.mac,
                                       xfr=True, origin=dns.name.from_text("mesh.test."),
                                       tsig_ctx=ctx, multi=True)
        ctx = parsed.tsig_ctx
        assert parsed.had_tsig
    # Out of order, the chain breaks.
    with pytest.raises(dns.tsig.BadSignature):
        first = dns.message.from_wire(messages[0], keyring=their_key(), request_mac=query.mac,
                                      xfr=True, multi=True)
        dns.message.from_wire(messages[2], keyring=their_key(), request_mac=query.mac,
                              xfr=True, tsig_ctx=first.tsig_ctx, multi=True)


def test_stream_signer_needs_a_verified_request():
    with pytest.raises(ValueError):
        tsig.StreamSigner(tsig.Verdict("unsigned"))


@pytest.mark.parametrize("line, algorithm", [
    ("hmac-sha256:xfr-key:" + base64.b64encode(SECRET).decode(), "hmac-sha256"),
    ("HMAC-MD5:Xfr-Key.:" + base64.b64encode(SECRET).decode(), "hmac-md5.sig-alg.reg.int"),
    ("hmac-sha512:xfr-key:" + base64.b64encode(SECRET).decode() + "\n", "hmac-sha512"),
])
def test_key_lines(line, algorithm):
    key = tsig.parse_key_line(line, attached="x")
    assert (key.name, key.algorithm, key.secret, key.attached) == (
        "xfr-key", algorithm, SECRET, "x")
    assert "secret" not in repr(key) and base64.b64encode(SECRET).decode() not in repr(key)


@pytest.mark.parametrize("line, message", [
    ("hmac-sha256:xfr-key", "one line"),
    ("hmac-sha999:xfr-key:" + base64.b64encode(SECRET).decode(), "unknown TSIG algorithm"),
    ("hmac-sha256:bad key:" + base64.b64encode(SECRET).decode(), "invalid TSIG key name"),
    ("hmac-sha256:xfr-key:not*base64", "not valid base64"),
    ("hmac-sha256:xfr-key:" + base64.b64encode(b"short").decode(), "shorter than 16"),
])
def test_bad_key_lines_say_what_is_wrong(line, message):
    with pytest.raises(ValueError, match=message):
        tsig.parse_key_line(line)
