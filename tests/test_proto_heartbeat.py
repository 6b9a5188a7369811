"""The heartbeat record (docs/wire-format.md §4.9): layout, legacy form, endpoint rules, fuzz.

There is no vector file for heartbeats; the layout is checked byte by byte against the
section 4.9 table and the sizes against section 4.11.
"""

import dataclasses
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, heartbeat, prefixes
from dmfdns.proto.signing import Signer

OPERATOR = Signer(bytes(range(32)))
OTHER = Signer(bytes(range(1, 33)))
NOW = 1_800_000_000
ENDPOINT = "https://node1.example.com:8443"


def make(endpoint=ENDPOINT, version="0.1.0", capabilities=heartbeat.CAP_CLAIM_PROVIDER,
         zone="mesh.example.com", ts=NOW, exp=NOW + 86400, signer=OPERATOR) -> str:
    return heartbeat.sign(endpoint, signer.public_key, version, capabilities, zone, ts, exp,
                          signer)


def raw_body(endpoint=ENDPOINT.encode(), spk=OPERATOR.public_key, version=b"0.1.0",
             capabilities=1, zone=b"mesh.example.com", ts=NOW, exp=NOW + 86400,
             magic=b"DMPHB03") -> bytes:
    """A body laid out by hand from the section 4.9 table; ``zone=None`` leaves the zone
    fields out, as DMPHB02 does."""
    zone_fields = b"" if zone is None else bytes([len(zone)]) + zone
    return (magic + struct.pack(">H", len(endpoint)) + endpoint + spk + bytes([len(version)])
            + version + struct.pack(">H", capabilities) + zone_fields
            + struct.pack(">QQ", ts, exp))


def signed(body: bytes, signer=OPERATOR) -> str:
    return prefixes.HEARTBEAT + b64.encode(body + signer.sign(body))


# -- layout and sizes --------------------------------------------------------------------------

def test_layout_field_by_field():
    blob = b64.decode_after_prefix(make(capabilities=0x8001, ts=NOW, exp=NOW + 60),
                                   prefixes.HEARTBEAT)
    e = len(ENDPOINT)
    assert blob[:7] == b"DMPHB03"
    assert struct.unpack(">H", blob[7:9]) == (e,)
    assert blob[9:9 + e] == ENDPOINT.encode()
    at = 9 + e
    assert blob[at:at + 32] == OPERATOR.public_key
    assert blob[at + 32] == 5 and blob[at + 33:at + 38] == b"0.1.0"
    assert struct.unpack(">H", blob[at + 38:at + 40]) == (0x8001,)
    assert blob[at + 40] == 16 and blob[at + 41:at + 57] == b"mesh.example.com"
    assert struct.unpack(">QQ", blob[at + 57:at + 73]) == (NOW, NOW + 60)
    assert blob[at + 73:] == OPERATOR.sign(blob[:at + 73])
    assert len(blob) == 61 + e + 5 + 16 + 64


def test_signing_matches_the_hand_laid_body():
    assert make() == signed(raw_body())


LOWER = "abcdefghijklmnopqrstuvwxyz"
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
ASCII_TEXT = st.text(st.characters(max_codepoint=127), max_size=32)


@given(endpoint_host=st.text(LOWER, min_size=1, max_size=40).map(lambda h: h + ".example"),
       version=ASCII_TEXT, zone=st.text(LOWER + ".", max_size=64))
@settings(max_examples=200)
def test_size_formula_of_section_4_11(endpoint_host, version, zone):
    endpoint = f"https://{endpoint_host}"
    wire = make(endpoint=endpoint, version=version, zone=zone)
    blob_len = 61 + len(endpoint) + len(version) + len(zone) + 64
    assert len(b64.decode_after_prefix(wire, prefixes.HEARTBEAT)) == blob_len
    assert len(wire) == 19 + 4 * math.ceil(blob_len / 3)


def test_resigning_a_decoded_record_reproduces_the_wire():
    wire = make(capabilities=0xFFFF, zone="")
    assert heartbeat.sign(*dataclasses.astuple(heartbeat.decode(wire)), OPERATOR) == wire


# -- legacy DMPHB02 ----------------------------------------------------------------------------

def test_legacy_body_without_zone_fields_parses_with_an_empty_zone():
    record = heartbeat.decode(signed(raw_body(magic=b"DMPHB02", zone=None)))
    assert record == heartbeat.Heartbeat(ENDPOINT, OPERATOR.public_key, "0.1.0", 1, "",
                                         NOW, NOW + 86400)


def test_legacy_body_must_not_carry_zone_fields():
    assert heartbeat.decode(signed(raw_body(magic=b"DMPHB02"))) is None


def test_current_body_must_carry_zone_fields():
    assert heartbeat.decode(signed(raw_body(zone=None))) is None


def test_sign_emits_only_the_current_magic():
    assert b64.decode_after_prefix(make(zone=""), prefixes.HEARTBEAT)[:7] == b"DMPHB03"


@pytest.mark.parametrize("magic", [b"DMPHB01", b"DMPHB04", b"DMPCL01"])
def test_other_magics_are_refused(magic):
    assert heartbeat.decode(signed(raw_body(magic=magic))) is None


# -- capabilities ------------------------------------------------------------------------------

@pytest.mark.parametrize("capabilities, provider", [(0, False), (1, True), (0xFFFE, False),
                                                    (0xFFFF, True), (0x0101, True)])
def test_bit_zero_is_the_claim_provider_and_unknown_bits_are_kept(capabilities, provider):
    record = heartbeat.decode(make(capabilities=capabilities))
    assert record.capabilities == capabilities
    assert record.is_claim_provider is provider


# -- endpoint rules ----------------------------------------------------------------------------

GOOD_ENDPOINTS = [
    "https://node.example.com", "http://node.example.com:8053", "HTTPS://Node.Example.COM",
    "https://node.example.com.", "https://8.8.8.8", "https://8.8.8.8:443",
    "https://[2001:4860:4860::8888]:443", "https://xn--bcher-kva.example", "http://a.b",
]

BAD_ENDPOINTS = [
    ("", "non-empty"),
    ("https://" + "a" * 240 + ".example.com", "longer than 255"),
    ("https://node.example.com ", "whitespace"),
    ("https://nöde.example.com", "ASCII"),
    ("https://node\t.example.com", "whitespace"),
    ("ftp://node.example.com", "http or https"),
    ("node.example.com", "http or https"),
    ("//node.example.com", "http or https"),
    ("https://user@node.example.com", "user info"),
    ("https://user:pw@node.example.com", "user info"),
    ("https://:@node.example.com", "user info"),
    ("https://node.example.com/", "path"),
    ("https://node.example.com/v1", "path"),
    ("https://node.example.com?x=1", "query"),
    ("https://node.example.com?", "query"),
    ("https://node.example.com#top", "fragment"),
    ("https://node.example.com#", "fragment"),
    ("https://", "name a host"),
    ("https://:443", "name a host"),
    ("https://node.example.com:0", "port"),
    ("https://node.example.com:70000", "not a valid URL"),
    ("https://node.example.com:https", "not a valid URL"),
    ("https://[::1", "not a valid URL"),
    ("https://[v1.future]", "IPv6"),
    ("https://localhost", "local host"),
    ("https://LOCALHOST:8443", "local host"),
    ("https://localhost.", "local host"),
    ("https://localhost.localdomain", "local host"),
    ("https://ip6-localhost", "local host"),
    ("https://api.localhost", "local host"),
    ("https://127.0.0.1", "loopback"),
    ("https://127.8.9.10", "loopback"),
    ("https://[::1]:443", "loopback"),
    ("https://10.1.2.3", "private"),
    ("https://172.16.0.1", "private"),
    ("https://192.168.1.1", "private"),
    ("https://[fd00::1]", "private"),
    ("https://[::ffff:127.0.0.1]", "endpoint address is"),  # loopback or private by version
    ("https://169.254.169.254", "link-local"),
    ("https://[fe80::1]", "link-local"),
    ("https://224.0.0.251", "multicast"),
    ("https://[ff02::1]", "multicast"),
    ("https://0.0.0.0", "unspecified"),
    ("https://[::]", "unspecified"),
    ("https://240.0.0.1", "endpoint address is"),  # reserved, and private in Python's table
    ("https://127.1", "numeric"),
    ("https://2130706433", "numeric"),
    ("https://0x7f000001", "numeric"),
    ("https://node.0177", "numeric"),
    ("https://exa_mple.com", "not a host name"),
    ("https://-node.example.com", "not a host name"),
]


@pytest.mark.parametrize("endpoint", GOOD_ENDPOINTS)
def test_good_endpoints(endpoint):
    assert heartbeat.endpoint_problem(endpoint) is None
    assert heartbeat.decode(make(endpoint=endpoint)).endpoint == endpoint


@pytest.mark.parametrize("endpoint, message", BAD_ENDPOINTS)
def test_bad_endpoints_are_refused_by_sign_and_by_decode(endpoint, message):
    problem = heartbeat.endpoint_problem(endpoint)
    assert problem is not None and message in problem
    with pytest.raises(ValueError, match=message):
        make(endpoint=endpoint)
    raw = endpoint.encode("utf-8")
    if 1 <= len(raw) <= 0xFFFF:
        assert heartbeat.decode(signed(raw_body(endpoint=raw))) is None


@pytest.mark.parametrize("value", [None, 7, b"https://node.example.com"])
def test_endpoint_problem_answers_for_non_strings(value):
    assert heartbeat.endpoint_problem(value) == "endpoint must be a non-empty string"


# -- other fields ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(version="v" * 33), "version"),
    (dict(version="0.1.0-é"), "version"),
    (dict(capabilities=-1), "capabilities"),
    (dict(capabilities=0x10000), "capabilities"),
    (dict(zone="z" * 65), "zone"),
    (dict(zone="mesh example"), "zone"),
    (dict(zone="mesh.exämple"), "zone"),
    (dict(ts=-1), "ts must be"),
    (dict(ts=2**63, exp=2**63 + 1), "ts must be"),
    (dict(exp=2**63), "exp must be"),
    (dict(exp=NOW), "exp must be after ts"),
    (dict(exp=NOW - 1), "exp must be after ts"),
])
def test_sign_refuses_what_the_protocol_forbids(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_sign_refuses_an_operator_spk_that_is_not_the_signers():
    with pytest.raises(ValueError, match="signer's public key"):
        heartbeat.sign(ENDPOINT, OTHER.public_key, "1", 0, "", NOW, NOW + 1, OPERATOR)


@pytest.mark.parametrize("body", [
    raw_body(version=b"v" * 33),
    raw_body(version=b"0.1\xff"),
    raw_body(zone=b"z" * 65),
    raw_body(zone=b"mesh example"),
    raw_body(zone=b"m\xc3\xa9sh"),
    raw_body(endpoint=b""),
    raw_body(ts=2**63, exp=2**63 + 1),
    raw_body(exp=NOW),
    raw_body() + b"\x00",
    raw_body()[:-1],
    b"DMPHB03",
])
def test_malformed_bodies_are_refused_even_when_signed(body):
    assert heartbeat.decode(signed(body)) is None


def test_the_signature_must_be_by_the_embedded_operator_key():
    assert heartbeat.decode(signed(raw_body(), OTHER)) is None


def test_wrong_prefix_is_refused():
    assert heartbeat.decode(prefixes.CLAIM + make()[len(prefixes.HEARTBEAT):]) is None


# -- time --------------------------------------------------------------------------------------

@pytest.mark.parametrize("ts_offset, exp_offset, problem", [
    (0, 1, None),
    (300, 301, None),
    (-300, 1, None),
    (301, 302, "timestamp more than 5 minutes from now"),
    (-301, 1, "timestamp more than 5 minutes from now"),
    (-10, 0, "expired"),
    (0, heartbeat.MAX_LIFETIME, None),
    (0, heartbeat.MAX_LIFETIME + 1, "expiry more than 30 days ahead"),
])
def test_time_rules_at_their_boundaries(ts_offset, exp_offset, problem):
    wire = make(ts=NOW + ts_offset, exp=NOW + exp_offset)
    assert heartbeat.time_problem(heartbeat.decode(wire), NOW) == problem
    assert (heartbeat.parse_and_verify(wire, now=NOW) is None) == (problem is not None)


def test_time_rule_on_a_hand_made_record_with_exp_not_after_ts():
    record = heartbeat.Heartbeat(ENDPOINT, OPERATOR.public_key, "", 0, "", NOW, NOW)
    assert heartbeat.time_problem(record, NOW - 1) == "expiry not after timestamp"


# -- generated round trips and fuzz ------------------------------------------------------------

@given(st.builds("{}://{}.{}{}".format, st.sampled_from(["http", "https"]),
                 st.text(LOWER, min_size=1, max_size=20), st.text(LOWER, min_size=1, max_size=10),
                 st.one_of(st.just(""), st.integers(1, 65535).map(":{}".format)))
       .filter(lambda url: "localhost" not in url),
       ASCII_TEXT,
       st.integers(0, 0xFFFF),
       st.text(PRINTABLE, max_size=64),
       st.integers(0, 2**63 - 2), st.integers(1, 2**40))
@settings(max_examples=300)
def test_sign_decode_round_trip(endpoint, version, capabilities, zone, ts, lifetime):
    exp = min(ts + lifetime, 2**63 - 1)
    wire = heartbeat.sign(endpoint, OPERATOR.public_key, version, capabilities, zone, ts, exp,
                          OPERATOR)
    assert heartbeat.decode(wire) == heartbeat.Heartbeat(endpoint, OPERATOR.public_key, version,
                                                         capabilities, zone, ts, exp)


def assert_none_or_well_formed(record):
    if record is None:
        return
    assert isinstance(record, heartbeat.Heartbeat)
    assert heartbeat.endpoint_problem(record.endpoint) is None
    assert len(record.operator_spk) == 32 and len(record.version) <= 32
    assert len(record.claim_provider_zone) <= 64 and 0 <= record.capabilities <= 0xFFFF
    assert 0 <= record.ts < record.exp < 2**63


VALID_WIRE = make()
BLOB = b64.decode_after_prefix(VALID_WIRE, prefixes.HEARTBEAT)


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    assert_none_or_well_formed(heartbeat.parse_and_verify(text, now=NOW))
    assert_none_or_well_formed(heartbeat.parse_and_verify(prefixes.HEARTBEAT + text, now=NOW))


@given(st.binary(max_size=700))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    wire = prefixes.HEARTBEAT + b64.encode(data)
    assert_none_or_well_formed(heartbeat.parse_and_verify(wire, now=NOW))


@given(st.sampled_from([b"DMPHB03", b"DMPHB02"]), st.binary(max_size=300))
@settings(max_examples=2000)
def test_signed_random_bodies_never_raise(magic, data):
    assert_none_or_well_formed(heartbeat.decode(signed(magic + data)))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert heartbeat.parse_and_verify(VALID_WIRE[:cut], now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_of_the_wire_are_refused(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    assert heartbeat.parse_and_verify(flipped, now=NOW) is None


@given(st.integers(min_value=0, max_value=len(BLOB) * 8 - 1))
@settings(max_examples=2000)
def test_bit_flips_of_the_blob_are_refused(bit):
    blob = bytearray(BLOB)
    blob[bit // 8] ^= 1 << (bit % 8)
    assert heartbeat.decode(prefixes.HEARTBEAT + b64.encode(bytes(blob))) is None


@given(st.sampled_from(["http://", "https://", "https://[", "http://a@", ""]), st.text())
@settings(max_examples=2000)
def test_endpoint_problem_never_raises(scheme, rest):
    problem = heartbeat.endpoint_problem(scheme + rest)
    assert problem is None or isinstance(problem, str)
