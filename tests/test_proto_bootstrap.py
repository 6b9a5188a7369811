"""The bootstrap record (docs/wire-format.md §4.6): vectors, entry order, pinning, fuzz."""

import json
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, bootstrap, prefixes
from dmfdns.proto.bootstrap import BootstrapEntry
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.signing import Signer

CASES = json.loads(
    (pathlib.Path(__file__).parent / "vectors" / "bootstrap_record.json").read_text())
VECTOR_TS = 1893456000
# 2030-01-01 + 5 * 365 days falls one day short of the vectors' exp (2035-01-01, a leap day
# in between), so the round-trip wires parse from the next day on.
VECTOR_NOW = VECTOR_TS + 86400

ZONE_OP = Signer(bytes(range(32)))
OTHER = Signer(bytes(range(1, 33)))
OP_A, OP_B, OP_C = (bytes([n]) * 32 for n in (0xA1, 0xB2, 0xC3))
NOW = 1_800_000_000
EXP = NOW + 86400


def wire_of(case) -> str:
    return bytes.fromhex(case["expected_wire_hex"]).decode("ascii")


def entries_of(inputs):
    return [BootstrapEntry(e["priority"], e["cluster_base_domain"],
                           bytes.fromhex(e["operator_spk_hex"])) for e in inputs["entries"]]


@pytest.mark.parametrize("case", CASES, ids=[c["description"] for c in CASES])
def test_vector(case):
    wire = wire_of(case)
    signer = UserKeys.from_x25519_private(bytes.fromhex(case["signer_seed_hex"])).signer
    if "inputs" in case:
        i = case["inputs"]
        signed = bootstrap.sign(i["seq"], i["exp"], bytes.fromhex(i["signer_spk_hex"]),
                                i["user_domain"], entries_of(i), signer)
        assert signed == wire
        decoded = bootstrap.decode(wire, signer.public_key)
        assert list(decoded.entries) == entries_of(i)
    pinned = bytes.fromhex(case.get("verify_with_signer_spk_hex", signer.public_key.hex()))
    record = bootstrap.parse_and_verify(wire, pinned, now=case.get("verify_with_now", VECTOR_NOW))
    if case.get("expected_parse_result") == "none":
        assert record is None
    else:
        assert record.seq == case["expected_parse_seq"]
        assert record.user_domain == case["expected_parse_user_domain"]
        assert record.signer_spk == signer.public_key
        if case.get("expected_multi_string"):
            assert len(wire) > 255


def test_vector_round_trips_trip_the_five_year_cap_on_new_year_2030():
    signer_key = bootstrap.decode(wire_of(CASES[0])).signer_spk
    assert bootstrap.parse_and_verify(wire_of(CASES[0]), signer_key, now=VECTOR_TS) is None
    record = bootstrap.decode(wire_of(CASES[0]), signer_key)
    assert bootstrap.time_problem(record, VECTOR_TS) == "expiry more than 5 years ahead"


def test_vector_wrong_signer_fails_on_the_signature_not_on_the_structure():
    case = next(c for c in CASES if "verify_with_signer_spk_hex" in c)
    assert bootstrap.decode(wire_of(case)) is not None
    assert bootstrap.decode(wire_of(case), bytes.fromhex(case["verify_with_signer_spk_hex"])) is None


# -- helpers -----------------------------------------------------------------------------------

def make(entries=None, user_domain="example.com", seq=1, exp=EXP, signer=ZONE_OP) -> str:
    entries = [BootstrapEntry(10, "mesh.example.com", OP_A)] if entries is None else entries
    return bootstrap.sign(seq, exp, signer.public_key, user_domain, entries, signer)


def raw_name(name: bytes) -> bytes:
    return bytes([len(name)]) + name


def raw_body(entries=((10, b"mesh.example.com", OP_A),), user_domain=b"example.com",
             signer_spk=ZONE_OP.public_key, seq=1, exp=EXP, count=None,
             magic=b"DMPBS01") -> bytes:
    """A body laid out by hand from the section 4.6 table (no validation, no sorting)."""
    return (magic + struct.pack(">QQ", seq, exp) + signer_spk + raw_name(user_domain)
            + bytes([len(entries) if count is None else count])
            + b"".join(struct.pack(">H", p) + raw_name(base) + spk for p, base, spk in entries))


def signed(body: bytes, signer=ZONE_OP) -> str:
    return prefixes.BOOTSTRAP + b64.encode(body + signer.sign(body))


# -- layout ------------------------------------------------------------------------------------

def test_layout_field_by_field():
    wire = make([BootstrapEntry(7, "m.example.com", OP_B)], user_domain="corp.test", seq=5)
    blob = b64.decode_after_prefix(wire, prefixes.BOOTSTRAP)
    assert blob[:7] == b"DMPBS01"
    assert struct.unpack(">QQ", blob[7:23]) == (5, EXP)
    assert blob[23:55] == ZONE_OP.public_key
    assert blob[55] == 9 and blob[56:65] == b"corp.test"
    assert blob[65] == 1
    assert struct.unpack(">H", blob[66:68]) == (7,)
    assert blob[68] == 13 and blob[69:82] == b"m.example.com"
    assert blob[82:114] == OP_B
    assert blob[114:] == ZONE_OP.sign(blob[:114])
    assert len(blob) == 57 + 9 + (35 + 13) + 64


def test_size_matches_the_section_4_11_table():
    assert len(make()) == 263


# -- entries -----------------------------------------------------------------------------------

def test_entries_are_stably_sorted_by_priority_before_signing():
    given_order = [BootstrapEntry(30, "c.example", OP_C), BootstrapEntry(10, "b.example", OP_B),
                   BootstrapEntry(30, "a.example", OP_A)]
    record = bootstrap.decode(make(given_order))
    assert [e.cluster_base_domain for e in record.entries] == ["b.example", "c.example",
                                                               "a.example"]
    assert record.best_entry.cluster_base_domain == "b.example"
    in_order = [given_order[1], given_order[0], given_order[2]]
    assert make(given_order) == make(in_order)


def test_decode_sorts_entries_a_publisher_left_unsorted():
    body = raw_body([(20, b"late.example", OP_A), (5, b"early.example", OP_B)])
    record = bootstrap.decode(signed(body), ZONE_OP.public_key)
    assert [e.priority for e in record.entries] == [5, 20]


def test_names_lose_one_trailing_dot():
    record = bootstrap.decode(make([BootstrapEntry(1, "Mesh.Example.com.", OP_A)],
                                   user_domain="Example.com."))
    assert record.user_domain == "Example.com"
    assert record.entries[0].cluster_base_domain == "Mesh.Example.com"


def test_sixty_five_bytes_on_the_wire_are_fine_only_with_a_final_dot():
    name = b"a" * 31 + b"." + b"b" * 32
    assert len(name) == 64
    record = bootstrap.decode(signed(raw_body(user_domain=name + b".")))
    assert record.user_domain == name.decode()
    assert bootstrap.decode(signed(raw_body(user_domain=name + b"c"))) is None
    entry = ((1, name + b".", OP_A),)
    assert bootstrap.decode(signed(raw_body(entry))).entries[0].cluster_base_domain == name.decode()


@pytest.mark.parametrize("entries", [
    [BootstrapEntry(10, "mesh.example.com", OP_A), BootstrapEntry(10, "MESH.example.com.", OP_B)],
    [BootstrapEntry(0, "x.test", OP_A), BootstrapEntry(0, "x.test", OP_A)],
])
def test_sign_refuses_duplicate_priority_and_base(entries):
    with pytest.raises(ValueError, match="duplicate"):
        make(entries)


def test_decode_refuses_duplicate_priority_and_base():
    body = raw_body([(10, b"mesh.example.com", OP_A), (10, b"Mesh.Example.COM", OP_B)])
    assert bootstrap.decode(signed(body)) is None


def test_same_base_at_different_priorities_and_ties_are_allowed():
    record = bootstrap.decode(make([BootstrapEntry(10, "m.test", OP_A),
                                    BootstrapEntry(20, "m.test", OP_B),
                                    BootstrapEntry(20, "n.test", OP_C)]))
    assert len(record.entries) == 3


@pytest.mark.parametrize("entries, message", [
    ([], "1..16"),
    ([BootstrapEntry(i, f"m{i}.t", OP_A) for i in range(17)], "1..16"),
    ([BootstrapEntry(-1, "m.test", OP_A)], "priority"),
    ([BootstrapEntry(65536, "m.test", OP_A)], "priority"),
    ([BootstrapEntry(1, "m.test", OP_A[:31])], "32 bytes"),
    ([BootstrapEntry(1, "m_1.test", OP_A)], "not a DNS name"),
    ([BootstrapEntry(1, "m.test..", OP_A)], "not a DNS name"),
    ([BootstrapEntry(1, "a" * 40 + "." + "b" * 24, OP_A)], "longer than 64"),
])
def test_sign_refuses_bad_entries(entries, message):
    with pytest.raises(ValueError, match=message):
        make(entries)


@pytest.mark.parametrize("kwargs, message", [
    (dict(user_domain="exämple.com"), "not a DNS name"),
    (dict(user_domain=""), "not a DNS name"),
    (dict(user_domain="a" * 40 + "." + "b" * 24), "longer than 64"),
    (dict(seq=2**64), "64-bit"),
    (dict(exp=-1), "64-bit"),
])
def test_sign_refuses_bad_header_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_sign_refuses_a_record_over_1200_characters():
    entries = [BootstrapEntry(i, f"{'m' * 40}{i}.example.com", OP_A) for i in range(12)]
    with pytest.raises(ValueError, match="1200"):
        make(entries)
    assert len(make(entries[:7])) <= 1200


def test_decode_refuses_a_signed_record_over_1200_characters():
    entries = tuple((i, f"{'m' * 40}{i}.example.com".encode(), OP_A) for i in range(12))
    wire = signed(raw_body(entries))
    assert len(wire) > 1200
    assert bootstrap.decode(wire, ZONE_OP.public_key) is None


@pytest.mark.parametrize("body", [
    raw_body(magic=b"DMPCL01"),
    raw_body(count=0, entries=()),
    raw_body(count=17, entries=tuple((i, b"m%d.test" % i, OP_A) for i in range(17))),
    raw_body(count=2),
    raw_body() + b"\x00",
    raw_body()[:-1],
    raw_body(user_domain=b""),
    raw_body(user_domain=b"ex\xffmple.com"),
    raw_body(entries=((1, b"", OP_A),)),
    raw_body(entries=((1, b"_x.test", OP_A),)),
    raw_body()[:56],
])
def test_malformed_bodies_are_refused_even_when_signed(body):
    assert bootstrap.decode(signed(body), ZONE_OP.public_key) is None


# -- keys --------------------------------------------------------------------------------------

def test_pinned_key_must_have_signed():
    wire = make()
    assert bootstrap.decode(wire, ZONE_OP.public_key) is not None
    assert bootstrap.decode(wire, OTHER.public_key) is None
    assert bootstrap.parse_and_verify(wire, OTHER.public_key, now=NOW) is None


def test_embedded_key_must_equal_the_signing_key():
    """Signed by the pinned key but naming another: refused both ways."""
    wire = signed(raw_body(signer_spk=OTHER.public_key), ZONE_OP)
    assert bootstrap.decode(wire, ZONE_OP.public_key) is None
    assert bootstrap.decode(wire, OTHER.public_key) is None
    assert bootstrap.decode(wire) is None


def test_without_a_pinned_key_the_embedded_key_verifies():
    wire = make(signer=OTHER)
    assert bootstrap.decode(wire).signer_spk == OTHER.public_key
    assert bootstrap.parse_and_verify(wire, None, now=NOW).signer_spk == OTHER.public_key


@pytest.mark.parametrize("key", [b"", b"x" * 31, "not bytes", 7, bytes(32)])
def test_malformed_pinned_keys_are_refused_not_raised(key):
    assert bootstrap.decode(make(), key) is None


def test_sign_refuses_a_signer_spk_that_is_not_the_signers():
    with pytest.raises(ValueError, match="signer's public key"):
        bootstrap.sign(1, EXP, OTHER.public_key, "example.com",
                       [BootstrapEntry(1, "m.test", OP_A)], ZONE_OP)


def test_resigning_a_decoded_record_reproduces_the_wire():
    wire = make([BootstrapEntry(9, "b.test", OP_B), BootstrapEntry(3, "a.test", OP_A)], seq=4)
    r = bootstrap.decode(wire)
    assert bootstrap.sign(r.seq, r.exp, r.signer_spk, r.user_domain, r.entries, ZONE_OP) == wire


# -- binding and time --------------------------------------------------------------------------

def test_expected_user_domain_binding():
    wire = make(user_domain="example.com")
    key = ZONE_OP.public_key
    assert bootstrap.parse_and_verify(wire, key, now=NOW, expected_user_domain="EXAMPLE.com.")
    assert bootstrap.parse_and_verify(wire, key, now=NOW, expected_user_domain="example.org") is None
    assert bootstrap.parse_and_verify(wire, key, now=NOW, expected_user_domain=5) is None


@pytest.mark.parametrize("exp_offset, problem", [
    (0, None), (-1, "expired"), (bootstrap.MAX_LIFETIME, None),
    (bootstrap.MAX_LIFETIME + 1, "expiry more than 5 years ahead"),
])
def test_time_rules_at_their_boundaries(exp_offset, problem):
    wire = make(exp=NOW + exp_offset)
    assert bootstrap.time_problem(bootstrap.decode(wire), NOW) == problem
    accepted = bootstrap.parse_and_verify(wire, ZONE_OP.public_key, now=NOW)
    assert (accepted is None) == (problem is not None)


# -- generated round trips and fuzz ------------------------------------------------------------

LDH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
LABEL = st.text(LDH, min_size=1, max_size=10).filter(lambda l: l[0] != "-" != l[-1])
DNS = st.lists(LABEL, min_size=1, max_size=3).map(".".join)
ENTRY = st.builds(BootstrapEntry, st.integers(0, 0xFFFF), DNS, st.binary(min_size=32, max_size=32))
ENTRIES = st.lists(ENTRY, min_size=1, max_size=6,
                   unique_by=lambda e: (e.priority, e.cluster_base_domain.casefold()))


@given(ENTRIES, DNS, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
@settings(max_examples=300)
def test_sign_decode_round_trip(entries, user_domain, seq, exp):
    wire = bootstrap.sign(seq, exp, ZONE_OP.public_key, user_domain, entries, ZONE_OP)
    record = bootstrap.decode(wire, ZONE_OP.public_key)
    assert (record.seq, record.exp, record.user_domain) == (seq, exp, user_domain)
    assert list(record.entries) == sorted(entries, key=lambda e: e.priority)


def assert_none_or_well_formed(record):
    if record is None:
        return
    assert isinstance(record, bootstrap.Bootstrap)
    assert 1 <= len(record.entries) <= 16
    assert [e.priority for e in record.entries] == sorted(e.priority for e in record.entries)
    assert all(len(e.operator_spk) == 32 and 1 <= len(e.cluster_base_domain) <= 64
               for e in record.entries)
    assert len(record.signer_spk) == 32 and 1 <= len(record.user_domain) <= 64


VALID_WIRE = make([BootstrapEntry(10, "a.example", OP_A), BootstrapEntry(20, "b.example", OP_B)])
BLOB = b64.decode_after_prefix(VALID_WIRE, prefixes.BOOTSTRAP)
KEY = ZONE_OP.public_key


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    assert_none_or_well_formed(bootstrap.parse_and_verify(text, KEY, now=NOW))
    assert_none_or_well_formed(bootstrap.parse_and_verify(prefixes.BOOTSTRAP + text, None,
                                                          now=NOW))


@given(st.binary(max_size=900))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    wire = prefixes.BOOTSTRAP + b64.encode(data)
    assert_none_or_well_formed(bootstrap.parse_and_verify(wire, KEY, now=NOW))
    assert_none_or_well_formed(bootstrap.decode(wire))


@given(st.binary(max_size=400))
@settings(max_examples=2000)
def test_signed_random_bodies_never_raise(data):
    """Signed by the pinned key, so the structure parser sees every byte string."""
    assert_none_or_well_formed(bootstrap.decode(signed(b"DMPBS01" + data), KEY))


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_signed_random_entries_never_raise(data):
    body = raw_body(entries=())[:-1] + data  # a valid header, then arbitrary entry bytes
    assert_none_or_well_formed(bootstrap.decode(signed(body), KEY))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert bootstrap.parse_and_verify(VALID_WIRE[:cut], KEY, now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_of_the_wire_are_refused(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    assert bootstrap.parse_and_verify(flipped, KEY, now=NOW) is None


@given(st.integers(min_value=0, max_value=len(BLOB) * 8 - 1))
@settings(max_examples=2000)
def test_bit_flips_of_the_blob_are_refused(bit):
    blob = bytearray(BLOB)
    blob[bit // 8] ^= 1 << (bit % 8)
    wire = prefixes.BOOTSTRAP + b64.encode(bytes(blob))
    assert bootstrap.decode(wire, KEY) is None
    assert bootstrap.decode(wire) is None
