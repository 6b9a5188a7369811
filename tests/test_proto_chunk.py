"""The chunk record (docs/wire-format.md §4.1): encode, decode, checksum, hash."""

import base64
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, chunk, prefixes

NOW = 1893456000


def blob_for(block: bytes, parity: bytes = bytes(range(32))) -> bytes:
    return hashlib.sha256(block).digest()[:8] + block + parity


VALID_BLOB = blob_for(bytes(range(128)))
VALID_WIRE = chunk.encode(VALID_BLOB)


def test_encode_is_the_senders_exact_form():
    assert VALID_WIRE == "v=dmp1;t=chunk;d=" + base64.b64encode(VALID_BLOB).decode()
    assert len(VALID_WIRE) == chunk.WIRE_LEN == 241


def test_decode_splits_the_blob():
    record = chunk.decode(VALID_WIRE)
    assert record.checksum == VALID_BLOB[:8]
    assert record.block == bytes(range(128))
    assert record.parity == bytes(range(32))
    assert record.blob == VALID_BLOB
    assert record.hash == hashlib.sha256(VALID_BLOB).digest() == chunk.chunk_hash(VALID_BLOB)


def test_make_blob_prepends_the_checksum():
    block, parity = os.urandom(128), os.urandom(32)
    assert chunk.make_blob(block, parity) == blob_for(block, parity)
    with pytest.raises(ValueError):
        chunk.make_blob(block[:-1], parity)


def test_checksum_ok_checks_only_the_block_checksum():
    assert chunk.checksum_ok(VALID_BLOB)
    # The parity is not covered by the checksum: no RS decode happens on the write path.
    assert chunk.checksum_ok(VALID_BLOB[:-1] + bytes([VALID_BLOB[-1] ^ 1]))
    assert not chunk.checksum_ok(VALID_BLOB[:8] + bytes([VALID_BLOB[8] ^ 1]) + VALID_BLOB[9:])
    assert not chunk.checksum_ok(bytes([VALID_BLOB[0] ^ 1]) + VALID_BLOB[1:])
    assert not chunk.checksum_ok(VALID_BLOB[:-1])
    assert not chunk.checksum_ok(VALID_BLOB + b"\0")
    assert not chunk.checksum_ok("not bytes")


def test_encode_refuses_bad_blobs():
    with pytest.raises(ValueError, match="168"):
        chunk.encode(VALID_BLOB[:-1])
    with pytest.raises(ValueError, match="checksum"):
        chunk.encode(bytes(8) + VALID_BLOB[8:])


def test_bad_checksum_is_structurally_readable_but_does_not_decode():
    wire = prefixes.CHUNK + b64.encode(bytes(8) + VALID_BLOB[8:])
    assert chunk.read_blob(wire) == bytes(8) + VALID_BLOB[8:]
    assert chunk.decode(wire) is None


@pytest.mark.parametrize("wire", [
    "",
    "v=dmp1;t=chunk;",
    VALID_WIRE[:-4],
    VALID_WIRE + "AAAA",
    VALID_WIRE.replace("v=dmp1", "v=dmp2"),
    "v=dmp1;t=manifest;d=" + VALID_WIRE[17:],
    VALID_WIRE[:17] + " " + VALID_WIRE[17:],
    VALID_WIRE + ";",
    VALID_WIRE + ";x=AAAA",
    VALID_WIRE + ";m=AAAA;m=AAAA",
    VALID_WIRE + ";m=not base64!",
    VALID_WIRE + ";m=" + "A" * 1000,
    None,
    b"v=dmp1;t=chunk;d=",
])
def test_malformed_values_are_refused(wire):
    assert chunk.decode(wire) is None
    assert chunk.parse_and_verify(wire, now=NOW) is None


def test_optional_metadata_key_is_accepted_and_ignored():
    meta = b64.encode(b'{"chunk":0}')
    record = chunk.decode(f"{VALID_WIRE};m={meta}")
    assert record is not None and record.blob == VALID_BLOB


def test_parse_and_verify_checks_the_manifest_hash_when_given():
    good = chunk.chunk_hash(VALID_BLOB)
    assert chunk.parse_and_verify(VALID_WIRE, now=NOW, expected_hash=good) is not None
    assert chunk.parse_and_verify(VALID_WIRE, now=NOW, expected_hash=bytes(32)) is None
    assert chunk.time_problem(chunk.decode(VALID_WIRE), NOW) is None


@given(block=st.binary(min_size=128, max_size=128), parity=st.binary(min_size=32, max_size=32))
@settings(max_examples=300)
def test_round_trip(block, parity):
    blob = chunk.make_blob(block, parity)
    record = chunk.parse_and_verify(chunk.encode(blob), now=NOW)
    assert record.blob == blob


def _well_formed_or_none(record):
    if record is not None:
        assert isinstance(record, chunk.Chunk)
        assert len(record.blob) == chunk.BLOB_LEN and chunk.checksum_ok(record.blob)


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    _well_formed_or_none(chunk.parse_and_verify(text, now=NOW))


@given(st.binary(max_size=400))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    _well_formed_or_none(chunk.parse_and_verify(prefixes.CHUNK + b64.encode(data), now=NOW))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert chunk.parse_and_verify(VALID_WIRE[:cut], now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_never_pass_as_the_original(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    record = chunk.parse_and_verify(flipped, now=NOW)
    _well_formed_or_none(record)
    # A flip in the parity keeps the checksum valid; the manifest's hash still catches it.
    if record is not None:
        assert record.hash != chunk.chunk_hash(VALID_BLOB)
