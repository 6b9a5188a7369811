"""The claim record (docs/wire-format.md §4.10): layout, the 255-byte cap, time rules, fuzz.

There is no vector file for claims; the layout is checked byte by byte against the
section 4.10 table and the sizes against section 4.11.
"""

import dataclasses
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, claim, prefixes
from dmfdns.proto.signing import Signer

SENDER = Signer(bytes(range(32)))
OTHER = Signer(bytes(range(1, 33)))
MSG_ID = bytes(range(100, 116))
NOW = 1_800_000_000


def make(msg_id=MSG_ID, domain="mesh.test", slot=3, ts=NOW, exp=NOW + 300,
         signer=SENDER) -> str:
    return claim.sign(msg_id, signer.public_key, domain, slot, ts, exp, signer)


def raw_body(msg_id=MSG_ID, spk=SENDER.public_key, domain=b"mesh.test", slot=3, ts=NOW,
             exp=NOW + 300, magic=b"DMPCL01") -> bytes:
    """A body laid out by hand from the section 4.10 table (no validation)."""
    return (magic + msg_id + spk + bytes([len(domain)]) + domain + bytes([slot])
            + struct.pack(">QQ", ts, exp))


def signed(body: bytes, signer=SENDER) -> str:
    return prefixes.CLAIM + b64.encode(body + signer.sign(body))


# -- layout and sizes --------------------------------------------------------------------------

def test_layout_field_by_field():
    blob = b64.decode_after_prefix(make(slot=9, ts=NOW, exp=NOW + 60), prefixes.CLAIM)
    assert blob[:7] == b"DMPCL01"
    assert blob[7:23] == MSG_ID
    assert blob[23:55] == SENDER.public_key
    assert blob[55] == 9 and blob[56:65] == b"mesh.test"
    assert blob[65] == 9
    assert struct.unpack(">QQ", blob[66:82]) == (NOW, NOW + 60)
    assert blob[82:] == SENDER.sign(blob[:82])
    assert len(blob) == 137 + 9


def test_signing_matches_the_hand_laid_body():
    assert make() == signed(raw_body())


def test_size_with_mesh_test_is_211():
    assert len(make(domain="mesh.test")) == 211


def test_a_43_byte_domain_fills_exactly_one_character_string():
    wire = make(domain="d" * 39 + ".net")
    assert len(wire) == 255
    assert claim.parse_and_verify(wire, now=NOW).sender_mailbox_domain == "d" * 39 + ".net"


@pytest.mark.parametrize("length", range(1, 44))
def test_size_formula_of_section_4_11(length):
    wire = make(domain="x" * length)
    assert len(wire) == 15 + 4 * math.ceil((137 + length) / 3) <= 255


def test_a_44_byte_domain_is_refused_on_both_sides():
    with pytest.raises(ValueError, match="43"):
        make(domain="d" * 44)
    wire = signed(raw_body(domain=b"d" * 44))
    assert len(wire) == 259
    assert claim.decode(wire) is None


def test_the_cap_counts_bytes_not_characters():
    make(domain="é" * 21)  # 42 bytes
    with pytest.raises(ValueError, match="43 UTF-8 bytes"):
        make(domain="é" * 22)


def test_resigning_a_decoded_record_reproduces_the_wire():
    wire = make(domain="bücher.example", slot=0)
    assert claim.sign(*dataclasses.astuple(claim.decode(wire)), SENDER) == wire


def test_a_cluster_prefix_does_not_make_a_claim():
    """Claim and cluster manifest share the DMPCL01 magic; only the prefix tells them apart."""
    body = make()[len(prefixes.CLAIM):]
    assert claim.decode(prefixes.CLUSTER + body) is None
    assert claim.decode(prefixes.CLAIM + body) is not None


# -- fields ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(msg_id=bytes(15)), "msg_id"),
    (dict(msg_id="0" * 16), "msg_id"),
    (dict(domain=""), "non-empty"),
    (dict(domain="mesh test"), "whitespace"),
    (dict(domain="mesh.test\n"), "whitespace"),
    (dict(domain="mesh\x00test"), "control"),
    (dict(domain="mesh\x7ftest"), "control"),
    (dict(domain="mesh\x85test"), "control"),
    (dict(domain="mesh\u2028test"), "whitespace"),
    (dict(domain="mesh\u3000test"), "whitespace"),
    (dict(domain="mesh\ud800"), "control"),
    (dict(slot=-1), "slot"),
    (dict(slot=10), "slot"),
    (dict(ts=-1), "ts must be"),
    (dict(ts=2**63, exp=2**63 + 1), "ts must be"),
    (dict(exp=2**63), "exp must be"),
    (dict(exp=NOW), "exp must be after ts"),
])
def test_sign_refuses_what_the_protocol_forbids(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_sign_refuses_a_sender_spk_that_is_not_the_signers():
    with pytest.raises(ValueError, match="signer's public key"):
        claim.sign(MSG_ID, OTHER.public_key, "mesh.test", 0, NOW, NOW + 1, SENDER)


@pytest.mark.parametrize("slot", range(10))
def test_every_slot_round_trips(slot):
    assert claim.decode(make(slot=slot)).slot == slot


def test_any_utf8_domain_without_whitespace_is_carried_as_written():
    assert claim.decode(make(domain="Bücher.Example")).sender_mailbox_domain == "Bücher.Example"


@pytest.mark.parametrize("body", [
    raw_body(magic=b"DMPCL02"),
    raw_body(domain=b""),
    raw_body(domain=b"mesh test"),
    raw_body(domain=b"mesh\x00"),
    raw_body(domain=b"m\xffsh"),
    raw_body(slot=10),
    raw_body(slot=255),
    raw_body(ts=2**63, exp=2**63 + 1),
    raw_body(exp=NOW),
    raw_body(exp=NOW - 1),
    raw_body() + b"\x00",
    raw_body()[:-1],
    raw_body(msg_id=bytes(15)),
    b"DMPCL01",
])
def test_malformed_bodies_are_refused_even_when_signed(body):
    assert claim.decode(signed(body)) is None


def test_the_signature_must_be_by_the_embedded_sender_key():
    assert claim.decode(signed(raw_body(), OTHER)) is None


# -- time --------------------------------------------------------------------------------------

@pytest.mark.parametrize("ts_offset, exp_offset, problem", [
    (0, 1, None),
    (300, 301, None),
    (301, 302, "timestamp more than 5 minutes ahead"),
    (-86400, 1, None),  # a past ts is fine: only future skew is refused
    (-10, 0, "expired"),
    (-10, -1, "expired"),
    (0, claim.MAX_LIFETIME, None),
    (0, claim.MAX_LIFETIME + 1, "expiry more than 30 days ahead"),
])
def test_time_rules_at_their_boundaries(ts_offset, exp_offset, problem):
    wire = make(ts=NOW + ts_offset, exp=NOW + exp_offset)
    assert claim.time_problem(claim.decode(wire), NOW) == problem
    assert (claim.parse_and_verify(wire, now=NOW) is None) == (problem is not None)


def test_time_rule_on_a_hand_made_record_with_exp_not_after_ts():
    record = claim.Claim(MSG_ID, SENDER.public_key, "mesh.test", 0, NOW, NOW)
    assert claim.time_problem(record, NOW - 1) == "expiry not after timestamp"


# -- generated round trips and fuzz ------------------------------------------------------------

DOMAIN = st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zs", "Zl", "Zp"]),
                 min_size=1, max_size=43).filter(lambda d: len(d.encode()) <= 43
                                                 and claim.domain_problem(d) is None)


@given(st.binary(min_size=16, max_size=16), DOMAIN, st.integers(0, 9),
       st.integers(0, 2**63 - 2), st.integers(1, 2**40))
@settings(max_examples=300)
def test_sign_decode_round_trip(msg_id, domain, slot, ts, lifetime):
    exp = min(ts + lifetime, 2**63 - 1)
    wire = claim.sign(msg_id, SENDER.public_key, domain, slot, ts, exp, SENDER)
    assert len(wire) <= 255
    assert claim.decode(wire) == claim.Claim(msg_id, SENDER.public_key, domain, slot, ts, exp)


def assert_none_or_well_formed(record):
    if record is None:
        return
    assert isinstance(record, claim.Claim)
    assert len(record.msg_id) == 16 and len(record.sender_spk) == 32
    assert claim.domain_problem(record.sender_mailbox_domain) is None
    assert 0 <= record.slot <= 9 and 0 <= record.ts < record.exp < 2**63


VALID_WIRE = make()
BLOB = b64.decode_after_prefix(VALID_WIRE, prefixes.CLAIM)


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    assert_none_or_well_formed(claim.parse_and_verify(text, now=NOW))
    assert_none_or_well_formed(claim.parse_and_verify(prefixes.CLAIM + text, now=NOW))


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    assert_none_or_well_formed(claim.parse_and_verify(prefixes.CLAIM + b64.encode(data), now=NOW))


@given(st.binary(max_size=120))
@settings(max_examples=2000)
def test_signed_random_bodies_never_raise(data):
    assert_none_or_well_formed(claim.decode(signed(b"DMPCL01" + data)))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert claim.parse_and_verify(VALID_WIRE[:cut], now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_of_the_wire_are_refused(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    assert claim.parse_and_verify(flipped, now=NOW) is None


@given(st.integers(min_value=0, max_value=len(BLOB) * 8 - 1))
@settings(max_examples=2000)
def test_bit_flips_of_the_blob_are_refused(bit):
    blob = bytearray(BLOB)
    blob[bit // 8] ^= 1 << (bit % 8)
    assert claim.decode(prefixes.CLAIM + b64.encode(bytes(blob))) is None
