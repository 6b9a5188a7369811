"""The slot manifest (docs/wire-format.md §4.2): vectors, sign rules, parse rules, fuzz."""

import json
import os
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, prefixes, slot_manifest
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.signing import Signer

CASES = json.loads((pathlib.Path(__file__).parent / "vectors" / "slot_manifest.json").read_text())
VECTOR_TS = 1893456000
# The vectors' exp (2035) lies years after their ts, beyond the parser's 30-day cap, so the
# round trips are parsed a day before expiry.
VECTOR_NOW = 2051222400 - 86400

SIGNER = Signer(bytes(range(32)))
RECIPIENT = bytes(range(100, 132))
MSG_ID = bytes(range(16))
NOW = 1_800_000_000


def wire_of(case) -> str:
    return bytes.fromhex(case["expected_wire_hex"]).decode("ascii")


def sign_vector(case) -> str:
    i = case["inputs"]
    signer = UserKeys.from_x25519_private(bytes.fromhex(case["sender_seed_hex"])).signer
    return slot_manifest.sign(
        bytes.fromhex(i["msg_id_hex"]), bytes.fromhex(i["sender_spk_hex"]),
        bytes.fromhex(i["recipient_id_hex"]), i["total_chunks"], i["data_chunks"],
        i["prekey_id"], i["ts"], i["exp"], [], signer, legacy=True)


@pytest.mark.parametrize("case", CASES, ids=[c["description"] for c in CASES])
def test_vector(case):
    wire = wire_of(case)
    if "inputs" in case:
        assert sign_vector(case) == wire
        record = slot_manifest.parse_and_verify(wire, now=VECTOR_NOW)
        assert record.total_chunks == case["expected_parse_total_chunks"]
        assert record.legacy and record.chunk_hashes == ()
        assert record.data_chunks == case["inputs"]["data_chunks"]
        assert record.prekey_id == case["inputs"]["prekey_id"]
        assert record.sender_spk.hex() == case["inputs"]["sender_spk_hex"]
        # At the vectors' own ts the 2035 expiry is beyond the 30-day cap.
        assert slot_manifest.parse_and_verify(wire, now=VECTOR_TS) is None
        assert slot_manifest.time_problem(record, VECTOR_TS) == "expiry more than 30 days ahead"
    else:
        assert case["expected_parse_result"] == "none"
        assert slot_manifest.decode(wire) is None
        assert slot_manifest.parse_and_verify(wire, now=VECTOR_NOW) is None


def make(n=3, k=2, prekey_id=0, ts=NOW, exp=NOW + 300, hashes=None, **kw) -> str:
    if hashes is None:
        hashes = [bytes([i]) * 32 for i in range(n)]
    return slot_manifest.sign(MSG_ID, SIGNER.public_key, RECIPIENT, n, k, prekey_id, ts, exp,
                              hashes, SIGNER, **kw)


def test_hashed_manifest_round_trip_and_size():
    wire = make(n=6, k=4, prekey_id=9)
    assert len(wire) == 508  # section 4.2: n=6 -> 508 characters
    record = slot_manifest.parse_and_verify(wire, now=NOW)
    assert record == slot_manifest.SlotManifest(
        MSG_ID, SIGNER.public_key, RECIPIENT, 6, 4, 9, NOW, NOW + 300,
        tuple(bytes([i]) * 32 for i in range(6)))
    assert not record.legacy
    assert len(make(n=2, k=1)) == 336


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=3, k=0), "data_chunks"),
    (dict(n=3, k=4), "data_chunks"),
    (dict(n=1025, k=1, hashes=[]), "data_chunks"),
    (dict(prekey_id=2**32), "u32"),
    (dict(prekey_id=-1), "u32"),
    (dict(exp=2**64), "u64"),
    (dict(hashes=[]), "legacy=True"),
    (dict(hashes=[bytes(32)] * 2), "one 32-byte hash"),
    (dict(hashes=[bytes(32), bytes(32), bytes(31)]), "one 32-byte hash"),
    (dict(legacy=True), "no chunk hashes"),
])
def test_sign_refuses_what_the_protocol_forbids(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_sign_refuses_a_foreign_sender_key():
    with pytest.raises(ValueError, match="signer"):
        slot_manifest.sign(MSG_ID, bytes(32), RECIPIENT, 1, 1, 0, NOW, NOW, [bytes(32)], SIGNER)


def test_legacy_form_needs_the_explicit_flag():
    wire = make(n=3, k=2, hashes=[], legacy=True)
    assert len(wire) == 252
    assert slot_manifest.parse_and_verify(wire, now=NOW).legacy


def _resign(body: bytes) -> str:
    return prefixes.SLOT_MANIFEST + b64.encode(body + SIGNER.sign(body))


def _body(n, k, hash_count):
    return (struct.pack(">16s32s32sIIIQQ", MSG_ID, SIGNER.public_key, RECIPIENT, n, k, 0, NOW,
                        NOW + 60) + bytes(32) * hash_count)


@pytest.mark.parametrize("n, k, hash_count", [
    (3, 2, 2),      # hash list shorter than n
    (3, 2, 4),      # hash list longer than n
    (0, 0, 0),      # n = 0
    (2, 3, 2),      # k > n
    (2, 0, 2),      # k = 0
    (1025, 1, 0),   # n over 1024 (legacy length)
])
def test_decode_refuses_inconsistent_bodies_even_when_signed(n, k, hash_count):
    assert slot_manifest.decode(_resign(_body(n, k, hash_count))) is None


def test_decode_accepts_a_correctly_signed_hand_built_body():
    assert slot_manifest.decode(_resign(_body(3, 2, 3))) is not None


def test_signature_must_be_by_the_embedded_sender():
    other = Signer(bytes(32))
    body = _body(1, 1, 1)
    assert slot_manifest.decode(prefixes.SLOT_MANIFEST + b64.encode(body + other.sign(body))) is None


def test_time_rules():
    record = slot_manifest.decode(make(exp=NOW + 300))
    assert slot_manifest.time_problem(record, NOW) is None
    assert slot_manifest.time_problem(record, NOW + 300) is None
    assert slot_manifest.time_problem(record, NOW + 301) == "expired"
    assert slot_manifest.is_expired(record, NOW + 301)
    assert not slot_manifest.is_expired(record, NOW + 300)
    far = make(exp=NOW + 30 * 86400 + 1)
    assert slot_manifest.time_problem(slot_manifest.decode(far), NOW) == (
        "expiry more than 30 days ahead")
    assert slot_manifest.parse_and_verify(far, now=NOW) is None
    assert slot_manifest.parse_and_verify(make(exp=NOW + 30 * 86400), now=NOW) is not None
    # Expiry itself is the caller's decision.
    assert slot_manifest.parse_and_verify(make(exp=NOW - 1), now=NOW) is not None


def test_bindings():
    wire = make()
    assert slot_manifest.parse_and_verify(wire, now=NOW, expected_sender_spk=SIGNER.public_key,
                                          expected_recipient_id=RECIPIENT)
    assert slot_manifest.parse_and_verify(wire, now=NOW, expected_sender_spk=bytes(32)) is None
    assert slot_manifest.parse_and_verify(wire, now=NOW, expected_recipient_id=bytes(32)) is None


@given(n=st.integers(1, 40), data=st.data(), prekey_id=st.integers(0, 2**32 - 1),
       ts=st.integers(0, 2**64 - 1))
@settings(max_examples=200)
def test_sign_parse_round_trip(n, data, prekey_id, ts):
    k = data.draw(st.integers(1, n))
    hashes = [os.urandom(32) for _ in range(n)]
    exp = data.draw(st.integers(0, 2**64 - 1))
    wire = slot_manifest.sign(MSG_ID, SIGNER.public_key, RECIPIENT, n, k, prekey_id, ts, exp,
                              hashes, SIGNER)
    record = slot_manifest.decode(wire)
    assert (record.total_chunks, record.data_chunks, record.prekey_id, record.ts, record.exp,
            list(record.chunk_hashes)) == (n, k, prekey_id, ts, exp, hashes)
    assert len(wire) == 20 + 4 * -(-(172 + 32 * n) // 3)


VALID_WIRE = make()


def _well_formed_or_none(record):
    if record is not None:
        assert isinstance(record, slot_manifest.SlotManifest)
        assert 1 <= record.data_chunks <= record.total_chunks <= 1024
        assert len(record.chunk_hashes) in (0, record.total_chunks)
        assert len(record.msg_id) == 16 and len(record.sender_spk) == 32


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    _well_formed_or_none(slot_manifest.parse_and_verify(text, now=NOW))


@given(st.binary(max_size=600))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    wire = prefixes.SLOT_MANIFEST + b64.encode(data)
    _well_formed_or_none(slot_manifest.parse_and_verify(wire, now=NOW))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert slot_manifest.parse_and_verify(VALID_WIRE[:cut], now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_are_refused(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    assert slot_manifest.parse_and_verify(flipped, now=NOW) is None


@given(st.binary(min_size=48, max_size=600))
@settings(max_examples=2000)
def test_signed_random_bodies_never_raise(data):
    # The embedded key is ours, so the parser's length and bound checks are what decide.
    body = data[:16] + SIGNER.public_key + data[48:]
    record = slot_manifest.parse_and_verify(_resign(body), now=NOW)
    _well_formed_or_none(record)
    if record is not None:
        assert len(body) == 108 + 32 * len(record.chunk_hashes)
