"""The prekey record (docs/wire-format.md §4.4): vectors, sign rules, parse rules, fuzz."""

import json
import os
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, prefixes, prekey
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.signing import Signer

CASES = json.loads((pathlib.Path(__file__).parent / "vectors" / "prekey.json").read_text())
VECTOR_TS = 1893456000
# The vectors' exp (2035) lies years after their ts, beyond the parser's 30-day cap, so the
# round trips are parsed a day before expiry.
VECTOR_NOW = 2051222400 - 86400

SIGNER = Signer(bytes(range(32)))
PUBLIC = bytes(range(60, 92))
NOW = 1_800_000_000


def wire_of(case) -> str:
    return bytes.fromhex(case["expected_wire_hex"]).decode("ascii")


@pytest.mark.parametrize("case", CASES, ids=[c["description"] for c in CASES])
def test_vector(case):
    wire = wire_of(case)
    spk = bytes.fromhex(case["verify_with_signer_spk_hex"])
    if "inputs" in case:
        i = case["inputs"]
        signer = UserKeys.from_x25519_private(bytes.fromhex(case["signer_seed_hex"])).signer
        assert prekey.sign(i["prekey_id"], bytes.fromhex(i["public_key_hex"]), i["exp"],
                           signer) == wire
        now = VECTOR_NOW if i["exp"] > VECTOR_TS else VECTOR_TS
        record = prekey.parse_and_verify(wire, spk, now=now)
        assert record.prekey_id == case["expected_parse_prekey_id"]
        assert record.public_key.hex() == i["public_key_hex"]
        assert record.exp == i["exp"]
        # "expired" case: parses, and the caller's check says expired one second after exp.
        assert prekey.is_expired(record, record.exp + 1)
        assert not prekey.is_expired(record, record.exp)
    else:
        assert case["expected_parse_result"] == "none"
        assert prekey.parse_and_verify(wire, spk, now=VECTOR_NOW) is None
        assert prekey.decode_unverified(wire) is not None


def make(prekey_id=1, exp=NOW + 86400) -> str:
    return prekey.sign(prekey_id, PUBLIC, exp, SIGNER)


@pytest.mark.parametrize("args, message", [
    ((0, PUBLIC, NOW), "prekey_id"),
    ((2**32, PUBLIC, NOW), "prekey_id"),
    ((1, PUBLIC[:31], NOW), "32 bytes"),
    ((1, PUBLIC, 2**64), "u64"),
    ((1, PUBLIC, -1), "u64"),
])
def test_sign_refuses_what_the_protocol_forbids(args, message):
    with pytest.raises(ValueError, match=message):
        prekey.sign(*args, SIGNER)


def test_size_and_round_trip():
    wire = make(prekey_id=77)
    assert len(wire) == prekey.WIRE_LEN == 162
    assert prekey.parse_and_verify(wire, SIGNER.public_key, now=NOW) == prekey.Prekey(
        77, PUBLIC, NOW + 86400)


def test_verification_needs_the_owner_key():
    wire = make()
    assert prekey.decode(wire, Signer(bytes(32)).public_key) is None
    assert prekey.decode(wire, None) is None
    assert prekey.decode_unverified(wire) == prekey.decode(wire, SIGNER.public_key)


def _resign(body: bytes) -> str:
    return prefixes.PREKEY + b64.encode(body + SIGNER.sign(body))


def test_zero_id_is_refused_even_when_signed():
    wire = _resign(struct.pack(">I32sQ", 0, PUBLIC, NOW))
    assert prekey.decode(wire, SIGNER.public_key) is None
    assert prekey.decode_unverified(wire) is None


@pytest.mark.parametrize("body", [
    struct.pack(">I32sQ", 1, PUBLIC, NOW)[:-1],
    struct.pack(">I32sQ", 1, PUBLIC, NOW) + b"\0",
])
def test_wrong_lengths_are_refused(body):
    assert prekey.decode_unverified(_resign(body)) is None


def test_time_rules():
    record = prekey.decode(make(exp=NOW + 60), SIGNER.public_key)
    assert prekey.time_problem(record, NOW) is None
    assert prekey.time_problem(record, NOW + 61) == "expired"
    far = make(exp=NOW + 30 * 86400 + 1)
    assert prekey.time_problem(prekey.decode_unverified(far), NOW) == (
        "expiry more than 30 days ahead")
    assert prekey.parse_and_verify(far, SIGNER.public_key, now=NOW) is None
    assert prekey.parse_and_verify(make(exp=NOW + 30 * 86400), SIGNER.public_key, now=NOW)
    # Expired prekeys still parse; dropping them is the caller's job.
    assert prekey.parse_and_verify(make(exp=NOW - 1), SIGNER.public_key, now=NOW) is not None


@given(prekey_id=st.integers(1, 2**32 - 1), exp=st.integers(0, 2**64 - 1))
@settings(max_examples=300)
def test_sign_decode_round_trip(prekey_id, exp):
    public = os.urandom(32)
    wire = prekey.sign(prekey_id, public, exp, SIGNER)
    assert prekey.decode(wire, SIGNER.public_key) == prekey.Prekey(prekey_id, public, exp)


VALID_WIRE = make()


def _well_formed_or_none(record):
    if record is not None:
        assert isinstance(record, prekey.Prekey)
        assert 1 <= record.prekey_id < 2**32 and len(record.public_key) == 32


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    _well_formed_or_none(prekey.parse_and_verify(text, SIGNER.public_key, now=NOW))
    _well_formed_or_none(prekey.decode_unverified(text))


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    wire = prefixes.PREKEY + b64.encode(data)
    _well_formed_or_none(prekey.parse_and_verify(wire, SIGNER.public_key, now=NOW))
    _well_formed_or_none(prekey.decode_unverified(wire))


@given(st.binary(min_size=40, max_size=48))
@settings(max_examples=2000)
def test_signed_random_bodies_never_raise(body):
    _well_formed_or_none(prekey.parse_and_verify(_resign(body), SIGNER.public_key, now=NOW))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert prekey.parse_and_verify(VALID_WIRE[:cut], SIGNER.public_key, now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_are_refused(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    assert prekey.parse_and_verify(flipped, SIGNER.public_key, now=NOW) is None
