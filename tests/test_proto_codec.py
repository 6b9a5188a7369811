"""The chunk codec: plan, zfec erasure code, per-chunk RS parity, reassembly (wire 6, 6.1)."""

import hashlib
import itertools
import random
import struct

import pytest
import reedsolo
import zfec
from hypothesis import given, strategies as st

from dmfdns.proto import codec


def _message(length: int, seed: int = 0) -> bytes:
    return random.Random(seed * 100_003 + length).randbytes(length)


def _independent_blobs(outer: bytes, k: int, n: int) -> list[bytes]:
    """The chunk blobs built straight from section 6 steps 3-5, for comparison."""
    wrapped = struct.pack(">I", len(outer)) + outer
    wrapped = wrapped.ljust(k * 128, b"\x00")
    blocks = [wrapped[i:i + 128] for i in range(0, k * 128, 128)]
    shares = zfec.Encoder(k, n).encode(blocks)
    rs = reedsolo.RSCodec(32)
    return [hashlib.sha256(s).digest()[:8] + bytes(rs.encode(bytes(s))) for s in shares]


# --- plan (section 6 step 2) -------------------------------------------------------------

PARITY_TABLE = [((1, 3), 1), ((4, 6), 2), ((7, 10), 3), ((11, 13), 4), ((14, 16), 5),
                ((17, 20), 6)]


@pytest.mark.parametrize("k_range,parity", PARITY_TABLE)
def test_parity_table(k_range, parity):
    for k in range(k_range[0], k_range[1] + 1):
        for outer_len in (k * 128 - 4 - 127 if k > 1 else 0, k * 128 - 4):
            assert codec.plan(outer_len) == (k, k + parity), outer_len


def test_plan_matches_the_float_formula_of_the_reference():
    import math
    for outer_len in range(0, 787 * 128, 61):
        k = max(1, math.ceil((outer_len + 4) / 128))
        assert codec.plan(outer_len) == (k, k + max(1, math.ceil(0.3 * k)))


def test_plan_block_boundaries():
    assert codec.plan(0) == (1, 2)
    assert codec.plan(124) == (1, 2)
    assert codec.plan(125) == (2, 3)
    assert codec.plan(402) == (4, 6)


# --- encode layout ------------------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 124, 125, 402, 1000])
def test_blobs_match_the_step_by_step_construction(length):
    outer = _message(length)
    k, n = codec.plan(length)
    assert codec.encode(outer) == _independent_blobs(outer, k, n)


def test_blob_layout():
    outer = _message(300)
    blobs = codec.encode(outer)
    wrapped = struct.pack(">I", 300) + outer
    for j, blob in enumerate(blobs):
        assert len(blob) == codec.CHUNK_LEN == 168
        assert blob[:8] == hashlib.sha256(blob[8:136]).digest()[:8]
    # The erasure code is systematic: the first k shares are the blocks themselves.
    assert blobs[0][8:136] == wrapped[:128]
    assert blobs[2][8:136] == wrapped[256:].ljust(128, b"\x00")


def test_chunk_hashes_are_sha256_of_each_blob():
    blobs = codec.encode(_message(200))
    assert codec.chunk_hashes(blobs) == [hashlib.sha256(b).digest() for b in blobs]


def test_encode_refuses_more_than_256_shares():
    assert codec.plan(196 * 128 - 4) == (196, 255)
    assert len(codec.encode(bytes(196 * 128 - 4))) == 255
    with pytest.raises(ValueError):
        codec.encode(bytes(196 * 128 - 3))


# --- round trips ---------------------------------------------------------------------------

def _boundary_lengths():
    lengths = set()
    for k in range(1, 33):
        edge = k * 128 - 4
        lengths.update({edge - 1, edge, edge + 1})
    lengths.update({0, 1, 50, 333, 777, 1500, 2222, 3001, 3700, 4096})
    return sorted(length for length in lengths if 0 <= length <= 4096)


@pytest.mark.parametrize("length", _boundary_lengths())
def test_round_trip_with_all_parity_used(length):
    outer = _message(length)
    k, n = codec.plan(length)
    blobs = codec.encode(outer)
    hashes = codec.chunk_hashes(blobs)
    survivors = {j: blobs[j] for j in range(n - k, n)}   # the first n-k (data) shares lost
    assert codec.decode(k, n, survivors, hashes) == outer
    assert codec.decode(k, n, dict(enumerate(blobs)), hashes) == outer


@pytest.mark.parametrize("length", [0, 124, 125, 252, 253, 380, 381, 508])
def test_every_way_of_losing_parity_count_chunks(length):
    outer = _message(length, seed=1)
    k, n = codec.plan(length)
    assert n <= 6
    blobs = codec.encode(outer)
    hashes = codec.chunk_hashes(blobs)
    for kept in itertools.combinations(range(n), k):
        assert codec.decode(k, n, {j: blobs[j] for j in kept}, hashes) == outer, kept
    for kept in itertools.combinations(range(n), k - 1):
        assert codec.decode(k, n, {j: blobs[j] for j in kept}, hashes) is None


def test_decode_without_manifest_hashes():
    outer = _message(700)
    k, n = codec.plan(700)
    blobs = codec.encode(outer)
    assert codec.decode(k, n, {j: blobs[j] for j in range(1, n)}, None) == outer


# --- RS repair -----------------------------------------------------------------------------

def _corrupt(blob: bytes, positions) -> bytes:
    damaged = bytearray(blob)
    for position in positions:
        damaged[position] ^= 0xA5
    return bytes(damaged)


@pytest.mark.parametrize("errors", [1, 8, 15, 16])
def test_repair_up_to_16_byte_errors(errors):
    blob = codec.encode(_message(400))[3]
    positions = random.Random(errors).sample(range(8, 168), errors)
    assert codec.repair_chunk(_corrupt(blob, positions)) == blob


@pytest.mark.parametrize("errors", [17, 20, 40])
def test_more_than_16_errors_fail_cleanly(errors):
    blob = codec.encode(_message(400))[3]
    for seed in range(3):
        positions = random.Random(seed * 100 + errors).sample(range(8, 136), errors)
        assert codec.repair_chunk(_corrupt(blob, positions)) is None


def test_errors_only_in_parity_leave_the_share_usable():
    blob = codec.encode(_message(400))[0]
    damaged = _corrupt(blob, range(136, 168))
    assert codec.repair_chunk(damaged) == blob


def test_a_damaged_checksum_cannot_be_repaired():
    blob = codec.encode(_message(400))[0]
    assert codec.repair_chunk(_corrupt(blob, [0])) is None


def test_repair_refuses_wrong_lengths():
    blob = codec.encode(b"x")[0]
    assert codec.repair_chunk(blob[:-1]) is None
    assert codec.repair_chunk(blob + b"\x00") is None


def test_decode_repairs_chunks_when_no_hashes_are_known():
    outer = _message(500)
    k, n = codec.plan(500)
    blobs = codec.encode(outer)
    damaged = {j: _corrupt(blobs[j], range(20, 36)) for j in range(k)}
    assert codec.decode(k, n, damaged, None) == outer


# --- manifest hashes -----------------------------------------------------------------------

def test_wrong_hash_chunk_counts_as_lost():
    outer, other = _message(300), _message(300, seed=9)
    k, n = codec.plan(300)
    blobs, foreign = codec.encode(outer), codec.encode(other)
    hashes = codec.chunk_hashes(blobs)
    # A well-formed chunk of another message at index 0: skipped, the parity replaces it.
    mixed = dict(enumerate(blobs)) | {0: foreign[0]}
    assert codec.decode(k, n, mixed, hashes) == outer
    # With exactly k chunks offered and one of them foreign, the message cannot be rebuilt.
    assert codec.decode(k, n, {j: mixed[j] for j in range(k)}, hashes) is None
    # Without hashes the foreign chunk passes its own checksum and poisons the result.
    assert codec.decode(k, n, {j: mixed[j] for j in range(k)}, None) != outer


def test_repairable_chunk_with_wrong_hash_is_lost_before_rs(monkeypatch):
    outer = _message(300)
    k, n = codec.plan(300)
    blobs = codec.encode(outer)
    hashes = codec.chunk_hashes(blobs)
    calls = _count_rs_decodes(monkeypatch)
    damaged = {j: _corrupt(blobs[j], [50]) for j in range(n)}
    assert codec.decode(k, n, damaged, hashes) is None
    assert calls == []


def test_clean_chunks_cost_no_rs_decode(monkeypatch):
    outer = _message(2000)
    k, n = codec.plan(2000)
    blobs = codec.encode(outer)
    calls = _count_rs_decodes(monkeypatch)
    assert codec.decode(k, n, dict(enumerate(blobs)), codec.chunk_hashes(blobs)) == outer
    assert codec.decode(k, n, dict(enumerate(blobs)), None) == outer
    assert calls == []


def _count_rs_decodes(monkeypatch) -> list:
    calls = []
    real = codec._RS.decode

    def counting(data, *args, **kwargs):
        calls.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(codec._RS, "decode", counting)
    return calls


# --- the length rule and malformed input ---------------------------------------------------

def _blobs_with_length_field(length_field: int, k: int) -> list[bytes]:
    data = struct.pack(">I", length_field) + bytes(k * 128 - 4)
    blocks = [data[i:i + 128] for i in range(0, k * 128, 128)]
    rs = reedsolo.RSCodec(32)
    return [hashlib.sha256(b).digest()[:8] + bytes(rs.encode(b)) for b in blocks]


def test_length_rule():
    k = 2
    exact = _blobs_with_length_field(k * 128 - 4, k)
    assert codec.decode(k, k, dict(enumerate(exact)), None) == bytes(k * 128 - 4)
    too_long = _blobs_with_length_field(k * 128 - 3, k)
    assert codec.decode(k, k, dict(enumerate(too_long)), None) is None


@pytest.mark.parametrize("k,n", [(0, 1), (2, 1), (1, 257), (-1, 2), ("1", 2)])
def test_impossible_shapes_are_none(k, n):
    assert codec.decode(k, n, {0: codec.encode(b"x")[0]}, None) is None


def test_hash_list_of_the_wrong_length_is_none():
    blobs = codec.encode(b"abc")
    assert codec.decode(1, 2, dict(enumerate(blobs)), codec.chunk_hashes(blobs)[:1]) is None


def test_indexes_outside_the_share_range_are_ignored():
    blobs = codec.encode(b"abc")
    assert codec.decode(1, 2, {5: blobs[0], -1: blobs[1]}, None) is None
    assert codec.decode(1, 2, {5: blobs[0], 1: blobs[1]}, None) == b"abc"


@given(st.integers(min_value=-1, max_value=8), st.integers(min_value=-1, max_value=10),
       st.dictionaries(st.integers(min_value=-2, max_value=12),
                       st.binary(min_size=166, max_size=170), max_size=6),
       st.booleans())
def test_decode_never_raises(k, n, shares, with_hashes):
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(max(n, 0))] if with_hashes \
        else None
    result = codec.decode(k, n, shares, hashes)
    assert result is None or isinstance(result, bytes)


@given(st.binary(max_size=700), st.data())
def test_any_k_chunks_with_a_few_byte_errors_rebuild_the_message(outer, data):
    k, n = codec.plan(len(outer))
    blobs = codec.encode(outer)
    kept = data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=n, unique=True))
    flips = data.draw(st.lists(st.tuples(st.sampled_from(kept), st.integers(8, 167)),
                               max_size=6))
    received = {j: blobs[j] for j in kept}
    for j, position in flips:
        received[j] = _corrupt(received[j], [position])
    assert codec.decode(k, n, received, None) == outer
