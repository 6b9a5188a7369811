"""DMPv2 plaintext envelope and address canonicalisation (docs/wire-format.md §7)."""

import json
import pathlib

import pytest
from hypothesis import given, strategies as st

from dmfdns.proto.envelope import canonical_address, unwrap, wrap

VECTORS = json.loads((pathlib.Path(__file__).parent / "vectors" / "dmpv2_envelope.json")
                     .read_text())


def test_there_are_eight_vectors():
    assert len(VECTORS) == 8


@pytest.mark.parametrize("case", VECTORS, ids=[c["description"] for c in VECTORS])
def test_vector(case):
    inputs = case["inputs"]
    if "body_hex" in inputs:
        plaintext = wrap(bytes.fromhex(inputs["body_hex"]), inputs["sender_addr"])
        assert plaintext.hex() == case["expected_plaintext_hex"]
    else:
        plaintext = bytes.fromhex(inputs["plaintext_hex"])
    body, sender = unwrap(plaintext)
    assert body.hex() == case["expected_decode_body_hex"]
    assert sender == case["expected_decode_from"]


@pytest.mark.parametrize("text,expected", [
    ("alice@example.com", "alice@example.com"),
    ("  Alice@Example.COM.. \t", "alice@example.com"),
    ("a@b", "a@b"),
    ("a_b.c-d@x-y.z", "a_b.c-d@x-y.z"),
    ("0@0.0", "0@0.0"),
    ("a" * 64 + "@example.com", "a" * 64 + "@example.com"),
])
def test_canonical_forms(text, expected):
    assert canonical_address(text) == expected


@pytest.mark.parametrize("text", [
    None, 5, b"alice@example.com", "", "alice", "alice@", "@example.com",
    "a@b@c", "alice@example.com\u00e9", "\u00e4lice@example.com",
    "_alice@example.com", ".alice@example.com", "-alice@example.com",
    "alice.@example.com", "al..ice@example.com", "al+ice@example.com",
    "a" * 65 + "@example.com", "alice@-example.com", "alice@example-.com",
    "alice@exa_mple.com", "alice@example..com", "alice@.example.com", "alice@...",
    "alice@" + "a" * 64 + ".com", "alice@" + ".".join(["a" * 50] * 5),
    "ali ce@example.com",
])
def test_rejected_addresses(text):
    assert canonical_address(text) is None


def test_host_length_boundary():
    host_253 = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(host_253) == 253
    assert canonical_address("u@" + host_253) == "u@" + host_253
    assert canonical_address("u@" + host_253 + "c") is None


def test_wrap_uses_the_canonical_address():
    assert wrap(b"hi", " BOB@Mesh.Test. ") == b'DMPV2:{"from":"bob@mesh.test"}\nhi'


def test_wrap_falls_back_when_the_header_would_exceed_256_bytes():
    host = ".".join(["h" * 60] * 4)                     # 243 chars
    address = "a" * 2 + "@" + host                      # header 11 + 246 = 257 bytes
    assert canonical_address(address) == address
    assert wrap(b"body", address) == b"body"
    shorter = "a@" + host                               # header 256 bytes: still wrapped
    assert wrap(b"body", shorter).startswith(b"DMPV2:")
    assert unwrap(wrap(b"body", shorter)) == (b"body", shorter)


def test_unwrap_without_prefix_is_v1():
    assert unwrap(b"plain text") == (b"plain text", None)
    assert unwrap(b"") == (b"", None)


def test_unwrap_needs_a_newline_within_257_bytes_after_the_prefix():
    header = b'{"from":"a@b","pad":"' + b"x" * 240 + b'"}'
    assert len(header) == 263
    late = b"DMPV2:" + header + b"\nbody"
    assert unwrap(late) == (late, None)
    header = b'{"from":"a@b","pad":"' + b"x" * 233 + b'"}'
    assert len(header) == 256
    assert unwrap(b"DMPV2:" + header + b"\nbody") == (b"body", "a@b")


@pytest.mark.parametrize("header", [
    b"[1,2]", b'"a@b"', b"null", b"{bad json}", b'{"from":"\xc3\xa9@b"}', b"",
])
def test_unwrap_non_object_header_is_v1(header):
    plaintext = b"DMPV2:" + header + b"\nbody"
    assert unwrap(plaintext) == (plaintext, None)


@pytest.mark.parametrize("header", [b"{}", b'{"from":5}', b'{"from":"not an address"}',
                                    b'{"from":["a@b"]}'])
def test_unwrap_header_without_a_usable_from(header):
    assert unwrap(b"DMPV2:" + header + b"\nbody\nmore") == (b"body\nmore", None)


def test_unwrap_canonicalises_from():
    assert unwrap(b'DMPV2:{"from":"Alice@Example.COM."}\nx') == (b"x", "alice@example.com")


def test_body_may_contain_newlines_and_the_prefix():
    body = b"line1\nDMPV2:{}\nline3"
    assert unwrap(wrap(body, "a@b")) == (body, "a@b")


@given(st.binary(max_size=300), st.sampled_from([None, "a@b", "x.y@mesh.test", "bad"]))
def test_wrap_unwrap_round_trip(body, sender):
    assert unwrap(wrap(body, sender)) == (body, canonical_address(sender))


@given(st.binary(max_size=300))
def test_unwrap_never_raises(tail):
    body, sender = unwrap(b"DMPV2:" + tail)
    assert isinstance(body, bytes) and (sender is None or "@" in sender)


@given(st.text(max_size=80))
def test_canonical_address_is_idempotent(text):
    address = canonical_address(text)
    assert address is None or canonical_address(address) == address
