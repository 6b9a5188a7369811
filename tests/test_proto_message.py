"""DMPHeader canonical JSON, AAD and the outer DMPMessage (docs/wire-format.md §5.1, 5.2, 5.4)."""

import json
import struct

import pytest
from hypothesis import given, strategies as st

from dmfdns.proto.message import DMPHeader, aad, decode_outer, encode_outer

MSG_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
SENDER = bytes.fromhex("0b87" + "ab" * 28 + "49f1")
RECIPIENT = bytes.fromhex("78f1" + "cd" * 28 + "0fc8")
HEADER = DMPHeader(MSG_ID, SENDER, RECIPIENT, ts=1893456000, ttl=300)

AAD_JSON = ('{"v":1,"type":"DATA","msg_id":"00112233445566778899aabbccddeeff",'
            '"sender":"0b87' + "ab" * 28 + '49f1","recipient":"78f1' + "cd" * 28 + '0fc8",'
            '"total":0,"chunk":0,"ts":1893456000,"ttl":300}')


def test_header_json_is_canonical():
    assert HEADER.to_json(total=0).decode("ascii") == AAD_JSON
    assert HEADER.to_json(total=1) == AAD_JSON.replace('"total":0', '"total":1').encode()


def test_hex_fields_are_lowercase():
    header = DMPHeader(bytes([0xAB]) * 16, bytes([0xCD]) * 32, bytes([0xEF]) * 32, 5, 6)
    text = header.to_json(total=0).decode()
    assert '"msg_id":"' + "ab" * 16 + '","sender":"' + "cd" * 32 + '"' in text
    assert "AB" not in text and "CD" not in text and "EF" not in text


def test_aad_is_header_with_zero_total_then_prekey_id():
    assert aad(HEADER, 0) == AAD_JSON.encode() + bytes(4)
    assert aad(HEADER, 0xDEADBEEF) == AAD_JSON.encode() + bytes.fromhex("deadbeef")


def test_outer_layout():
    outer = encode_outer(HEADER, b"PAYLOAD")
    head = AAD_JSON.replace('"total":0', '"total":1').encode()
    assert outer == struct.pack(">H", len(head)) + head + b"PAYLOAD" + bytes(32)


def test_outer_round_trip():
    parsed = decode_outer(encode_outer(HEADER, b"\x00sealed\xff"))
    assert parsed == (HEADER, b"\x00sealed\xff")


def test_hello_bob_outer_size():
    """Section 5.4: 2 + 266 header (10-digit ts) + 102 payload (42-byte envelope) + 32."""
    outer = encode_outer(HEADER, bytes(102))
    assert len(HEADER.to_json(total=1)) == 266
    assert len(outer) == 402


def test_receiver_rebuilds_the_sender_aad():
    parsed, _ = decode_outer(encode_outer(HEADER, b"x"))
    assert aad(parsed, 7) == aad(HEADER, 7)


def test_trailer_contents_are_ignored():
    outer = encode_outer(HEADER, b"payload")
    assert decode_outer(outer[:-32] + b"\xff" * 32) == (HEADER, b"payload")


def test_empty_payload_is_allowed():
    assert decode_outer(encode_outer(HEADER, b"")) == (HEADER, b"")


def _outer_with(fields) -> bytes:
    head = json.dumps(fields, separators=(",", ":")).encode()
    return struct.pack(">H", len(head)) + head + b"p" + bytes(32)


def _fields():
    return json.loads(HEADER.to_json(total=1))


def test_header_from_other_writers_is_accepted():
    fields = _fields()
    fields["type"] = "ACK"
    parsed, payload = decode_outer(_outer_with(dict(reversed(list(fields.items())))))
    assert parsed.type == "ACK" and parsed.msg_id == MSG_ID and payload == b"p"


@pytest.mark.parametrize("key", ["v", "type", "msg_id", "sender", "recipient", "total",
                                 "chunk", "ts", "ttl"])
def test_missing_key_is_no_message(key):
    fields = _fields()
    del fields[key]
    assert decode_outer(_outer_with(fields)) is None


@pytest.mark.parametrize("key,value", [
    ("msg_id", "0011"), ("msg_id", "zz" * 16), ("msg_id", 5), ("sender", "00" * 31),
    ("recipient", None), ("ts", "1893456000"), ("ts", -1), ("ts", 1.5), ("ttl", True),
    ("type", "SPAM"), ("total", [1]), ("msg_id", "00 " + "11" * 14 + "2"),
])
def test_ill_typed_field_is_no_message(key, value):
    fields = _fields()
    fields[key] = value
    assert decode_outer(_outer_with(fields)) is None


@pytest.mark.parametrize("data", [
    b"", bytes(33), b"\x00\x05" + bytes(35),           # header length past the trailer
    b"\x00\x02[]" + bytes(32),                          # JSON, but not an object
    b"\x00\x03\xff\xfe\xfd" + bytes(32),                # not UTF-8
    b"\x00\x04{\"v\"" + bytes(32),                      # truncated JSON
    struct.pack(">H", 3000) + b"[" * 3000 + bytes(32),  # deep nesting
])
def test_malformed_outer_is_none(data):
    assert decode_outer(data) is None


def test_non_bytes_is_none():
    assert decode_outer("text") is None
    assert decode_outer(None) is None


@given(st.binary(max_size=600))
def test_decode_outer_never_raises(data):
    result = decode_outer(data)
    assert result is None or isinstance(result[0], DMPHeader)


_json_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=70),
    st.sampled_from(["00" * 16, "ab" * 32, "DATA", "MAILBOX"]),
    st.lists(st.integers() | st.text(max_size=4), max_size=3))


@given(st.dictionaries(st.sampled_from(sorted(_fields())) | st.text(max_size=5),
                       _json_values, max_size=12), st.binary(max_size=40))
def test_decode_outer_never_raises_on_json_headers(fields, tail):
    head = json.dumps(fields).encode()
    result = decode_outer(struct.pack(">H", len(head)) + head + tail)
    assert result is None or isinstance(result[0], DMPHeader)


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=2**40),
       st.integers(min_value=0, max_value=2**31))
def test_outer_round_trip_property(payload, ts, ttl):
    header = DMPHeader(MSG_ID, SENDER, RECIPIENT, ts=ts, ttl=ttl)
    assert decode_outer(encode_outer(header, payload)) == (header, payload)


def test_constructor_refuses_bad_fields():
    with pytest.raises(ValueError):
        DMPHeader(bytes(15), SENDER, RECIPIENT, 1, 1)
    with pytest.raises(ValueError):
        DMPHeader(MSG_ID, SENDER, RECIPIENT, 1, 1, type="NOPE")
    with pytest.raises(ValueError):
        DMPHeader(MSG_ID, SENDER, RECIPIENT, -1, 1)
