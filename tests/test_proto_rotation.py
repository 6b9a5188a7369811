"""The rotation record (docs/wire-format.md §4.7): vectors, subjects, co-signatures, fuzz."""

import dataclasses
import json
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, prefixes, rotation
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.signing import Signer

CASES = json.loads((pathlib.Path(__file__).parent / "vectors" / "rotation_record.json").read_text())
VECTOR_TS = 1893456000
# 2030-01-01 + 5 * 365 days falls one day short of the vectors' exp (2035-01-01, a leap day
# in between), so the round-trip wires parse from the next day on.
VECTOR_NOW = VECTOR_TS + 86400

OLD = Signer(bytes(range(32)))
NEW = Signer(bytes(range(1, 33)))
THIRD = Signer(bytes(range(2, 34)))
NOW = 1_800_000_000
USER, CLUSTER, BOOTSTRAP = rotation.SUBJECT_USER, rotation.SUBJECT_CLUSTER, rotation.SUBJECT_BOOTSTRAP


def wire_of(case) -> str:
    return bytes.fromhex(case["expected_wire_hex"]).decode("ascii")


def signers_of(case):
    return tuple(UserKeys.from_x25519_private(bytes.fromhex(case[k])).signer
                 for k in ("old_seed_hex", "new_seed_hex"))


@pytest.mark.parametrize("case", CASES, ids=[c["description"] for c in CASES])
def test_vector(case):
    wire = wire_of(case)
    old, new = signers_of(case)
    if "inputs" in case:
        i = case["inputs"]
        signed = rotation.sign(i["subject_type"], i["subject"], bytes.fromhex(i["old_spk_hex"]),
                               bytes.fromhex(i["new_spk_hex"]), i["seq"], i["ts"], i["exp"],
                               old, new)
        assert signed == wire
        decoded = rotation.decode(wire)
        assert (decoded.subject_type, decoded.seq, decoded.ts, decoded.exp) == (
            i["subject_type"], i["seq"], i["ts"], i["exp"])
        assert (decoded.old_spk.hex(), decoded.new_spk.hex()) == (i["old_spk_hex"],
                                                                  i["new_spk_hex"])
    if case.get("expected_parse_result") == "none":
        now = case.get("verify_with_now", VECTOR_NOW)
        assert rotation.parse_and_verify(wire, now=now) is None
    else:
        record = rotation.parse_and_verify(wire, now=VECTOR_NOW)
        assert record.seq == case["expected_parse_seq"]
        assert record.subject == case["expected_parse_subject"]


def test_vector_cosign_failure_is_a_signature_failure():
    forged = next(c for c in CASES if c["description"].startswith("cosign"))
    assert rotation.decode(wire_of(forged)) is None


def test_vector_expired_case_is_refused_for_expiry_only():
    expired = next(c for c in CASES if c["description"].startswith("expired"))
    record = rotation.decode(wire_of(expired))
    assert rotation.time_problem(record, expired["verify_with_now"]) == "expired"
    assert rotation.parse_and_verify(wire_of(expired), now=100) == record


def test_vector_round_trips_trip_the_five_year_cap_on_new_year_2030():
    record = rotation.decode(wire_of(CASES[0]))
    assert rotation.time_problem(record, VECTOR_TS) == "expiry more than 5 years ahead"
    assert rotation.parse_and_verify(wire_of(CASES[0]), now=VECTOR_TS) is None


# -- helpers -----------------------------------------------------------------------------------

def make(subject_type=USER, subject="alice@example.com", seq=1, ts=NOW, exp=NOW + 86400,
         old=OLD, new=NEW) -> str:
    return rotation.sign(subject_type, subject, old.public_key, new.public_key, seq, ts, exp,
                         old, new)


def raw_body(subject_type, subject: bytes, old_spk=OLD.public_key, new_spk=NEW.public_key,
             seq=1, ts=NOW, exp=NOW + 86400, magic=b"DMPROT1") -> bytes:
    """A body laid out by hand from the section 4.7 table (no validation)."""
    return (magic + bytes([subject_type, len(subject)]) + subject + old_spk + new_spk
            + struct.pack(">QQQ", seq, ts, exp))


def cosigned(body: bytes, old=OLD, new=NEW) -> str:
    return prefixes.ROTATION + b64.encode(body + old.sign(body) + new.sign(body))


# -- layout and signatures ---------------------------------------------------------------------

def test_layout_field_by_field():
    blob = b64.decode_after_prefix(make(seq=7, ts=11, exp=13), prefixes.ROTATION)
    subject = b"alice@example.com"
    assert blob[:7] == b"DMPROT1"
    assert blob[7] == USER and blob[8] == len(subject)
    assert blob[9:9 + len(subject)] == subject
    at = 9 + len(subject)
    assert blob[at:at + 32] == OLD.public_key
    assert blob[at + 32:at + 64] == NEW.public_key
    assert struct.unpack(">QQQ", blob[at + 64:at + 88]) == (7, 11, 13)
    body = blob[:at + 88]
    assert blob[at + 88:] == OLD.sign(body) + NEW.sign(body)
    assert len(blob) == 97 + len(subject) + 128


def test_size_matches_the_section_4_11_table():
    assert len(make()) == 342


@pytest.mark.parametrize("old, new", [(OLD, THIRD), (THIRD, NEW), (NEW, OLD)])
def test_both_signatures_must_be_by_the_named_keys(old, new):
    assert rotation.decode(cosigned(raw_body(USER, b"alice@example.com"), old, new)) is None


def test_signatures_in_the_order_old_then_new():
    body = raw_body(USER, b"alice@example.com")
    swapped = prefixes.ROTATION + b64.encode(body + NEW.sign(body) + OLD.sign(body))
    assert rotation.decode(swapped) is None
    assert rotation.decode(cosigned(body)) is not None


def test_resigning_a_decoded_record_reproduces_the_wire():
    wire = make(CLUSTER, "Mesh.Example.com.", seq=3)
    record = rotation.decode(wire)
    assert rotation.sign(*dataclasses.astuple(record), OLD, NEW) == wire


def test_sign_refuses_same_old_and_new_key():
    with pytest.raises(ValueError, match="differ"):
        make(new=OLD)


def test_decode_refuses_same_old_and_new_key_even_when_signed():
    body = raw_body(USER, b"alice@example.com", new_spk=OLD.public_key)
    assert rotation.decode(cosigned(body, OLD, OLD)) is None


def test_sign_refuses_keys_that_are_not_the_signers():
    with pytest.raises(ValueError, match="public keys"):
        rotation.sign(USER, "a@b.c", OLD.public_key, THIRD.public_key, 1, 1, 2, OLD, NEW)


@pytest.mark.parametrize("field", ["seq", "ts", "exp"])
@pytest.mark.parametrize("value", [-1, 2**64])
def test_sign_refuses_times_outside_u64(field, value):
    with pytest.raises(ValueError, match="64-bit"):
        make(**{field: value})


def test_u64_extremes_round_trip():
    record = rotation.decode(make(seq=2**64 - 1, ts=0, exp=2**64 - 1))
    assert (record.seq, record.ts, record.exp) == (2**64 - 1, 0, 2**64 - 1)


# -- subjects ----------------------------------------------------------------------------------

GOOD_SUBJECTS = [
    (USER, "alice@example.com"),
    (USER, "Alice Smith@Example.COM."),
    (USER, "ünïcode@example.com"),
    (USER, "a" * 200 + "@" + "b" * 54),  # 255 bytes: the whole u8
    (CLUSTER, "mesh.example.com"),
    (CLUSTER, "mesh.example.com."),
    (CLUSTER, "x" * 63 + "."),  # 63 bytes + the dot that is normalised away
    (BOOTSTRAP, "example.com"),
    (BOOTSTRAP, "a" * 63),
]

BAD_SUBJECTS = [
    (0, "alice@example.com", "subject type"),
    (4, "example.com", "subject type"),
    (USER, "", "non-empty"),
    (USER, "alice", "user@host"),
    (USER, "@example.com", "user@host"),
    (USER, "  @example.com", "user@host"),
    (USER, "alice@", "user@host"),
    (USER, "alice@exa_mple.com", "DNS name"),
    (USER, "alice@example.com..", "DNS name"),
    (USER, "alice@bob@example.com", "DNS name"),
    (USER, "a" * 201 + "@" + "b" * 54, "255"),
    (USER, "al\ud800ce@example.com", "Unicode"),
    (CLUSTER, "a" * 30 + "." + "b" * 34, "64"),
    (CLUSTER, "alice@example.com", "DNS name"),
    (CLUSTER, "example.com..", "DNS name"),
    (CLUSTER, "-mesh.example.com", "DNS name"),
    (BOOTSTRAP, "_dmp.example.com", "DNS name"),
    (BOOTSTRAP, "exämple.com", "DNS name"),
]


@pytest.mark.parametrize("subject_type, subject", GOOD_SUBJECTS)
def test_valid_subjects_round_trip_as_written(subject_type, subject):
    record = rotation.decode(make(subject_type, subject))
    assert (record.subject_type, record.subject) == (subject_type, subject)


@pytest.mark.parametrize("subject_type, subject, message", BAD_SUBJECTS)
def test_sign_refuses_bad_subjects(subject_type, subject, message):
    with pytest.raises(ValueError, match=message):
        make(subject_type, subject)


@pytest.mark.parametrize("subject_type, subject, message",
                         [s for s in BAD_SUBJECTS if "\ud800" not in s[1] and s[2] != "255"])
def test_decode_refuses_bad_subjects_even_when_signed(subject_type, subject, message):
    assert rotation.decode(cosigned(raw_body(subject_type, subject.encode()))) is None


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe@example.com"])
def test_decode_refuses_empty_or_non_utf8_subjects(raw):
    assert rotation.decode(cosigned(raw_body(USER, raw))) is None


@pytest.mark.parametrize("subject_type, subject, normal", [
    (USER, "Alice@Example.COM.", "Alice@example.com"),
    (USER, " bob @ host.example ", "bob@host.example"),
    (USER, "no-at-sign", "no-at-sign"),
    (CLUSTER, "Mesh.Example.com.", "mesh.example.com"),
    (BOOTSTRAP, "EXAMPLE.COM", "example.com"),
])
def test_normalize_subject(subject_type, subject, normal):
    assert rotation.normalize_subject(subject_type, subject) == normal


def test_expected_subject_binding_compares_normalised_forms():
    wire = make(USER, "Alice@example.com")
    assert rotation.parse_and_verify(wire, now=NOW, expected_subject="Alice@EXAMPLE.com.")
    assert rotation.parse_and_verify(wire, now=NOW, expected_subject="alice@example.com") is None
    assert rotation.parse_and_verify(wire, now=NOW, expected_subject="Alice@other.com") is None
    cluster = make(CLUSTER, "mesh.example.com")
    assert rotation.parse_and_verify(cluster, now=NOW, expected_subject="MESH.example.com.")
    assert rotation.parse_and_verify(cluster, now=NOW, expected_subject="example.com") is None


def test_expected_old_spk_binding():
    wire = make()
    assert rotation.parse_and_verify(wire, now=NOW, expected_old_spk=OLD.public_key)
    assert rotation.parse_and_verify(wire, now=NOW, expected_old_spk=NEW.public_key) is None


# -- structure and time ------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    raw_body(USER, b"alice@example.com", magic=b"DMPROT2"),
    raw_body(USER, b"alice@example.com") + b"\x00",
    raw_body(USER, b"alice@example.com")[:-1],
])
def test_malformed_bodies_are_refused_even_when_signed(body):
    assert rotation.decode(cosigned(body)) is None


def test_wrong_prefix_is_refused():
    wire = make()
    assert rotation.decode(prefixes.REVOCATION + wire[len(prefixes.ROTATION):]) is None


@pytest.mark.parametrize("exp_offset, problem", [
    (0, None), (-1, "expired"), (rotation.MAX_LIFETIME, None),
    (rotation.MAX_LIFETIME + 1, "expiry more than 5 years ahead"),
])
def test_time_rules_at_their_boundaries(exp_offset, problem):
    wire = make(exp=NOW + exp_offset)
    assert rotation.time_problem(rotation.decode(wire), NOW) == problem
    assert (rotation.parse_and_verify(wire, now=NOW) is None) == (problem is not None)


# -- generated round trips and fuzz ------------------------------------------------------------

LDH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
LABEL = st.text(LDH, min_size=1, max_size=10).filter(lambda l: l[0] != "-" != l[-1])
DNS = st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(lambda n: len(n) <= 64)
USER_SUBJECT = st.builds(lambda u, h: f"{u}@{h}",
                         st.text(st.characters(blacklist_categories=["Cs"],
                                               blacklist_characters="@"), max_size=40)
                         .filter(lambda u: u.strip()), DNS)
SUBJECT = st.one_of(st.tuples(st.just(USER), USER_SUBJECT),
                    st.tuples(st.sampled_from([CLUSTER, BOOTSTRAP]), DNS))
U64 = st.integers(0, 2**64 - 1)


@given(SUBJECT, U64, U64, U64)
@settings(max_examples=300)
def test_sign_decode_round_trip(subject, seq, ts, exp):
    subject_type, text = subject
    if len(text.encode()) > 255:
        return
    wire = rotation.sign(subject_type, text, OLD.public_key, NEW.public_key, seq, ts, exp,
                         OLD, NEW)
    assert rotation.decode(wire) == rotation.Rotation(subject_type, text, OLD.public_key,
                                                      NEW.public_key, seq, ts, exp)


def assert_none_or_well_formed(record):
    if record is None:
        return
    assert isinstance(record, rotation.Rotation)
    assert rotation.subject_problem(record.subject_type, record.subject) is None
    assert len(record.old_spk) == len(record.new_spk) == 32
    assert record.old_spk != record.new_spk
    assert all(0 <= v < 2**64 for v in (record.seq, record.ts, record.exp))


VALID_WIRE = make()


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    assert_none_or_well_formed(rotation.parse_and_verify(text, now=NOW))
    assert_none_or_well_formed(rotation.parse_and_verify(prefixes.ROTATION + text, now=NOW))


@given(st.binary(max_size=600))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    wire = prefixes.ROTATION + b64.encode(data)
    assert_none_or_well_formed(rotation.parse_and_verify(wire, now=NOW))


@given(st.binary(max_size=300))
@settings(max_examples=2000)
def test_cosigned_random_bodies_never_raise(data):
    assert_none_or_well_formed(rotation.decode(cosigned(b"DMPROT1" + data)))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert rotation.parse_and_verify(VALID_WIRE[:cut], now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_of_the_wire_are_refused(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    assert rotation.parse_and_verify(flipped, now=NOW) is None


BLOB = b64.decode_after_prefix(VALID_WIRE, prefixes.ROTATION)


@given(st.integers(min_value=0, max_value=len(BLOB) * 8 - 1))
@settings(max_examples=2000)
def test_bit_flips_of_the_blob_are_refused(bit):
    blob = bytearray(BLOB)
    blob[bit // 8] ^= 1 << (bit % 8)
    assert rotation.decode(prefixes.ROTATION + b64.encode(bytes(blob))) is None
