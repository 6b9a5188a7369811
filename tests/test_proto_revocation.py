"""The revocation record (docs/wire-format.md §4.8): vectors, self-signature, time, fuzz."""

import dataclasses
import json
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, prefixes, revocation
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.rotation import SUBJECT_BOOTSTRAP, SUBJECT_CLUSTER, SUBJECT_USER
from dmfdns.proto.signing import Signer

CASES = json.loads(
    (pathlib.Path(__file__).parent / "vectors" / "revocation_record.json").read_text())

KEY = Signer(bytes(range(32)))
OTHER = Signer(bytes(range(1, 33)))
NOW = 1_800_000_000


def wire_of(case) -> str:
    return bytes.fromhex(case["expected_wire_hex"]).decode("ascii")


def context_of(case) -> dict:
    """The parse_and_verify keywords a vector case asks for."""
    kwargs = {"now": case["verify_with_now"]}
    if "verify_with_expected_revoked_spk_hex" in case:
        kwargs["expected_revoked_spk"] = bytes.fromhex(case["verify_with_expected_revoked_spk_hex"])
    if "verify_with_max_age_seconds" in case:
        kwargs["max_age"] = case["verify_with_max_age_seconds"]
    return kwargs


@pytest.mark.parametrize("case", CASES, ids=[c["description"] for c in CASES])
def test_vector(case):
    wire = wire_of(case)
    signer = UserKeys.from_x25519_private(bytes.fromhex(case["revoked_seed_hex"])).signer
    if "inputs" in case:
        i = case["inputs"]
        signed = revocation.sign(i["subject_type"], i["subject"],
                                 bytes.fromhex(i["revoked_spk_hex"]), i["reason_code"], i["ts"],
                                 signer)
        assert signed == wire
    record = revocation.parse_and_verify(wire, **context_of(case))
    if case.get("expected_parse_result") == "none":
        assert record is None
    else:
        assert record.reason_code == case["expected_parse_reason_code"]
        assert record.subject == case["expected_parse_subject"]
        assert record.revoked_spk == signer.public_key


def test_vector_stale_case_parses_without_the_explicit_cap():
    stale = next(c for c in CASES if "verify_with_max_age_seconds" in c)
    record = revocation.parse_and_verify(wire_of(stale), now=stale["verify_with_now"])
    assert record is not None
    assert revocation.time_problem(record, stale["verify_with_now"],
                                   stale["verify_with_max_age_seconds"]) == "older than the maximum age"


def test_vector_wrong_expected_key_case_parses_without_the_binding():
    case = next(c for c in CASES if "verify_with_expected_revoked_spk_hex" in c)
    assert revocation.parse_and_verify(wire_of(case), now=case["verify_with_now"]) is not None


# -- helpers -----------------------------------------------------------------------------------

def make(subject_type=SUBJECT_USER, subject="alice@example.com", reason=1, ts=NOW,
         signer=KEY) -> str:
    return revocation.sign(subject_type, subject, signer.public_key, reason, ts, signer)


def raw_body(subject_type, subject: bytes, revoked_spk=KEY.public_key, reason=1, ts=NOW,
             magic=b"DMPRV01") -> bytes:
    """A body laid out by hand from the section 4.8 table (no validation)."""
    return (magic + bytes([subject_type, len(subject)]) + subject + revoked_spk
            + bytes([reason]) + struct.pack(">Q", ts))


def signed(body: bytes, signer=KEY) -> str:
    return prefixes.REVOCATION + b64.encode(body + signer.sign(body))


# -- layout and signature ----------------------------------------------------------------------

def test_layout_field_by_field():
    blob = b64.decode_after_prefix(make(SUBJECT_CLUSTER, "mesh.example.com", 2, 99),
                                   prefixes.REVOCATION)
    assert blob[:7] == b"DMPRV01"
    assert blob[7] == SUBJECT_CLUSTER and blob[8] == 16
    assert blob[9:25] == b"mesh.example.com"
    assert blob[25:57] == KEY.public_key
    assert blob[57] == 2
    assert struct.unpack(">Q", blob[58:66]) == (99,)
    assert blob[66:] == KEY.sign(blob[:66])
    assert len(blob) == 50 + 16 + 64


def test_size_matches_the_section_4_11_table():
    assert len(make()) == 196


def test_only_the_revoked_key_can_sign():
    assert revocation.decode(signed(raw_body(SUBJECT_USER, b"alice@example.com"), OTHER)) is None
    with pytest.raises(ValueError, match="revoked by itself"):
        revocation.sign(SUBJECT_USER, "alice@example.com", OTHER.public_key, 1, NOW, KEY)


def test_resigning_a_decoded_record_reproduces_the_wire():
    wire = make(SUBJECT_BOOTSTRAP, "Example.COM.", 4)
    assert revocation.sign(*dataclasses.astuple(revocation.decode(wire)), KEY) == wire


@pytest.mark.parametrize("reason", revocation.REASON_CODES)
def test_every_reason_code_round_trips(reason):
    assert revocation.decode(make(reason=reason)).reason_code == reason


@pytest.mark.parametrize("reason", [0, 5, 255])
def test_unknown_reason_codes_are_refused_on_both_sides(reason):
    with pytest.raises(ValueError, match="reason code"):
        make(reason=reason)
    assert revocation.decode(signed(raw_body(SUBJECT_USER, b"a@b.c", reason=reason))) is None


@pytest.mark.parametrize("ts", [-1, 2**64])
def test_sign_refuses_ts_outside_u64(ts):
    with pytest.raises(ValueError, match="64-bit"):
        make(ts=ts)


@pytest.mark.parametrize("subject_type, subject", [
    (SUBJECT_USER, "alice"), (SUBJECT_CLUSTER, "exa_mple.com"), (9, "example.com"),
    (SUBJECT_BOOTSTRAP, ""),
])
def test_subjects_follow_the_rotation_rules(subject_type, subject):
    with pytest.raises(ValueError):
        make(subject_type, subject)
    assert revocation.decode(signed(raw_body(subject_type, subject.encode()))) is None


@pytest.mark.parametrize("body", [
    raw_body(SUBJECT_USER, b"a@b.c", magic=b"DMPROT1"),
    raw_body(SUBJECT_USER, b"a@b.c") + b"\x00",
    raw_body(SUBJECT_USER, b"a@b.c")[:-1],
    raw_body(SUBJECT_USER, b"a@b.c\xff"),
    b"DMPRV01",
])
def test_malformed_bodies_are_refused_even_when_signed(body):
    assert revocation.decode(signed(body)) is None


# -- bindings and time -------------------------------------------------------------------------

def test_bindings():
    wire = make(SUBJECT_USER, "alice@Example.com")
    assert revocation.parse_and_verify(wire, now=NOW, expected_revoked_spk=KEY.public_key)
    assert revocation.parse_and_verify(wire, now=NOW, expected_revoked_spk=OTHER.public_key) is None
    assert revocation.parse_and_verify(wire, now=NOW, expected_subject="alice@EXAMPLE.com.")
    assert revocation.parse_and_verify(wire, now=NOW, expected_subject="bob@example.com") is None


@pytest.mark.parametrize("ts_offset, max_age, problem", [
    (300, None, None),
    (301, None, "timestamp more than 5 minutes ahead"),
    (-10**9, None, None),  # permanent by default
    (-100, 100, None),
    (-101, 100, "older than the maximum age"),
])
def test_time_rules_at_their_boundaries(ts_offset, max_age, problem):
    wire = make(ts=NOW + ts_offset)
    assert revocation.time_problem(revocation.decode(wire), NOW, max_age) == problem
    accepted = revocation.parse_and_verify(wire, now=NOW, max_age=max_age)
    assert (accepted is None) == (problem is not None)


# -- generated round trips and fuzz ------------------------------------------------------------

LDH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
LABEL = st.text(LDH, min_size=1, max_size=10).filter(lambda l: l[0] != "-" != l[-1])
DNS = st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(lambda n: len(n) <= 64)


@given(st.sampled_from([SUBJECT_CLUSTER, SUBJECT_BOOTSTRAP]), DNS,
       st.sampled_from(revocation.REASON_CODES), st.integers(0, 2**64 - 1))
@settings(max_examples=300)
def test_sign_decode_round_trip(subject_type, subject, reason, ts):
    wire = revocation.sign(subject_type, subject, KEY.public_key, reason, ts, KEY)
    assert revocation.decode(wire) == revocation.Revocation(subject_type, subject,
                                                            KEY.public_key, reason, ts)


def assert_none_or_well_formed(record):
    if record is None:
        return
    assert isinstance(record, revocation.Revocation)
    assert record.reason_code in revocation.REASON_CODES
    assert len(record.revoked_spk) == 32 and 0 <= record.ts < 2**64


VALID_WIRE = make()
BLOB = b64.decode_after_prefix(VALID_WIRE, prefixes.REVOCATION)


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    assert_none_or_well_formed(revocation.parse_and_verify(text, now=NOW))
    assert_none_or_well_formed(revocation.parse_and_verify(prefixes.REVOCATION + text, now=NOW))


@given(st.binary(max_size=400))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    wire = prefixes.REVOCATION + b64.encode(data)
    assert_none_or_well_formed(revocation.parse_and_verify(wire, now=NOW, max_age=10))


@given(st.binary(max_size=300))
@settings(max_examples=2000)
def test_signed_random_bodies_never_raise(data):
    assert_none_or_well_formed(revocation.decode(signed(b"DMPRV01" + data)))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert revocation.parse_and_verify(VALID_WIRE[:cut], now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_of_the_wire_are_refused(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    assert revocation.parse_and_verify(flipped, now=NOW) is None


@given(st.integers(min_value=0, max_value=len(BLOB) * 8 - 1))
@settings(max_examples=2000)
def test_bit_flips_of_the_blob_are_refused(bit):
    blob = bytearray(BLOB)
    blob[bit // 8] ^= 1 << (bit % 8)
    assert revocation.decode(prefixes.REVOCATION + b64.encode(bytes(blob))) is None
