"""The identity record (docs/wire-format.md §4.3): vectors, versions suffix, parse rules, fuzz."""

import json
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, identity, prefixes
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.signing import Signer

CASES = json.loads((pathlib.Path(__file__).parent / "vectors" / "identity_record.json").read_text())
VECTOR_NOW = 1893456000

SIGNER = Signer(bytes(range(32)))
X25519 = bytes(range(50, 82))
NOW = 1_800_000_000


def wire_of(case) -> str:
    return bytes.fromhex(case["expected_wire_hex"]).decode("ascii")


@pytest.mark.parametrize("case", CASES, ids=[c["description"] for c in CASES])
def test_vector(case):
    wire = wire_of(case)
    if "inputs" in case:
        i = case["inputs"]
        signer = UserKeys.from_x25519_private(bytes.fromhex(case["identity_seed_hex"])).signer
        signed = identity.sign(i["username"], bytes.fromhex(i["x25519_pk_hex"]),
                               bytes.fromhex(i["ed25519_spk_hex"]), i["ts"], signer,
                               versions=i.get("versions", (1,)))
        assert signed == wire
        record = identity.parse_and_verify(wire, now=VECTOR_NOW)
        assert record.username == case["expected_parse_username"]
        assert list(record.versions) == case.get("expected_parse_versions", [1])
        assert record.x25519_pk.hex() == i["x25519_pk_hex"]
        assert record.ed25519_spk.hex() == i["ed25519_spk_hex"]
        assert record.ts == i["ts"]
    else:
        assert case["expected_parse_result"] == "none"
        assert identity.parse_and_verify(wire, now=VECTOR_NOW) is None


def make(username="alice", ts=NOW, **kw) -> str:
    return identity.sign(username, X25519, SIGNER.public_key, ts, SIGNER, **kw)


def body_of(wire: str) -> bytes:
    return b64.decode_after_prefix(wire, prefixes.IDENTITY)[:-64]


def resign(body: bytes, signer=SIGNER) -> str:
    return prefixes.IDENTITY + b64.encode(body + signer.sign(body))


def test_writer_normalises_versions():
    assert make(versions=[1]) == make(versions=[1, 1]) == make()
    assert body_of(make(versions=[2, 1, 2])).endswith(b"\x02\x01\x02")
    assert identity.decode(make(versions=[3, 0, 255])).versions == (0, 3, 255)
    assert identity.decode(make(versions=[2])).versions == (2,)


@pytest.mark.parametrize("kwargs, message", [
    (dict(versions=[]), "at least one"),
    (dict(versions=[256]), "0..255"),
    (dict(versions=[-1]), "0..255"),
    (dict(versions=["1"]), "0..255"),
    (dict(username=""), "1..64"),
    (dict(username="é" * 33), "1..64"),
    (dict(ts=2**64), "u64"),
])
def test_sign_refuses_what_the_protocol_forbids(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_sign_refuses_a_foreign_spk():
    with pytest.raises(ValueError, match="signer"):
        identity.sign("alice", X25519, bytes(32), NOW, SIGNER)


def test_any_utf8_username_up_to_64_bytes():
    name = "Ünïcødé user ✓"
    assert identity.decode(make(username=name)).username == name
    assert identity.decode(make(username="x" * 64)).username == "x" * 64


def _fixed(name=b"alice") -> bytes:
    return bytes([len(name)]) + name + X25519 + SIGNER.public_key + struct.pack(">Q", NOW)


@pytest.mark.parametrize("suffix, expected", [
    (b"", (1,)),
    (b"\x01\x01", (1,)),          # accepted on parse although writers never emit it
    (b"\x02\x01\x02", (1, 2)),
    (b"\x00", None),              # V = 0
    (b"\x02\x01", None),          # fewer bytes than V
    (b"\x01\x01\x02", None),      # more bytes than V
    (b"\x02\x02\x01", None),      # not ascending
    (b"\x02\x01\x01", None),      # duplicate
])
def test_versions_suffix_on_parse(suffix, expected):
    record = identity.decode(resign(_fixed() + suffix))
    assert (record.versions if record else None) == expected


@pytest.mark.parametrize("body", [
    b"\x00" + X25519 + SIGNER.public_key + bytes(8) + b"x",         # L = 0
    bytes([65]) + b"a" * 65 + X25519 + SIGNER.public_key + bytes(8),  # L = 65
    _fixed()[:-1],                                                   # fixed part cut short
    bytes([2]) + b"\xff\xfe" + X25519 + SIGNER.public_key + bytes(8),  # not UTF-8
])
def test_malformed_bodies_are_refused_even_when_signed(body):
    assert identity.decode(resign(body)) is None


def test_signature_must_be_by_the_embedded_key():
    assert identity.decode(resign(_fixed(), Signer(bytes(32)))) is None


def test_no_time_rule_and_bindings():
    wire = make(ts=0)
    record = identity.parse_and_verify(wire, now=NOW)
    assert identity.time_problem(record, 2**63) is None
    assert identity.parse_and_verify(wire, now=NOW, expected_username="alice")
    assert identity.parse_and_verify(wire, now=NOW, expected_username="Alice") is None
    assert identity.parse_and_verify(wire, now=NOW, expected_spk=SIGNER.public_key)
    assert identity.parse_and_verify(wire, now=NOW, expected_spk=bytes(32)) is None


def test_sizes():
    assert len(make()) == 212
    assert len(make(versions=[1, 2])) == 216
    assert len(make(username="u" * 64)) == 288


@given(username=st.text(min_size=1, max_size=64).filter(lambda s: len(s.encode()) <= 64),
       ts=st.integers(0, 2**64 - 1),
       versions=st.lists(st.integers(0, 255), min_size=1, max_size=20))
@settings(max_examples=300)
def test_sign_parse_round_trip(username, ts, versions):
    record = identity.parse_and_verify(make(username=username, ts=ts, versions=versions),
                                       now=NOW)
    assert record == identity.Identity(username, X25519, SIGNER.public_key, ts,
                                       tuple(sorted(set(versions))))


VALID_WIRE = make(versions=[1, 2])


def _well_formed_or_none(record):
    if record is not None:
        assert isinstance(record, identity.Identity)
        assert 1 <= len(record.username.encode()) <= 64
        assert list(record.versions) == sorted(set(record.versions)) and record.versions
        assert len(record.x25519_pk) == 32 and len(record.ed25519_spk) == 32


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    _well_formed_or_none(identity.parse_and_verify(text, now=NOW))


@given(st.binary(max_size=400))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    _well_formed_or_none(identity.parse_and_verify(prefixes.IDENTITY + b64.encode(data), now=NOW))


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_signed_random_bodies_never_raise(data):
    # Put our key where the parser will look for it, so the layout checks are what decide.
    name_len = data[0] if data else 0
    at = 1 + name_len + 32
    body = data[:at] + SIGNER.public_key + data[at + 32:] if len(data) > at else data
    _well_formed_or_none(identity.parse_and_verify(resign(body), now=NOW))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert identity.parse_and_verify(VALID_WIRE[:cut], now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_are_refused(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    assert identity.parse_and_verify(flipped, now=NOW) is None
