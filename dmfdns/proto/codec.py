"""The chunk codec: outer message <-> n chunk blobs of 168 bytes (docs/wire-format.md §6, 6.1).

Send side: ``u32_be(len(outer)) || outer`` is zero-padded to k blocks of 128 bytes, a
systematic erasure code (zfec, GF(2^8) with 0x11D) turns them into n shares, and each share
becomes a blob ``H(share)[0:8] || share || RS parity (32 bytes)``, the parity being
``reedsolo.RSCodec(32)`` with its defaults (fcr 0, prim 0x11D, generator 2). Any k intact
shares rebuild the message.

Receive side: a blob whose SHA-256 differs from the manifest's hash for its index counts as
lost, and that is checked first. A blob whose checksum matches its share needs no further
work; only a blob failing its checksum is handed to the (pure Python, 2-3 ms) RS decoder,
which corrects up to 16 byte errors in the share and parity.
"""

import struct

import reedsolo
import zfec

from .chunk import BLOB_LEN as CHUNK_LEN, BLOCK_LEN, CHECKSUM_LEN, checksum_ok, chunk_hash, \
    make_blob

RS_PARITY_LEN = 32
RS_MAX_ERRORS = RS_PARITY_LEN // 2
_LENGTH = struct.Struct(">I")
MAX_OUTER_LEN = 2 ** 32 - 1
# zfec handles at most 256 shares; the protocol's own cap (1024) is never reached in
# practice because a reference node caps a value at 2048 bytes (n <= 42).
MAX_SHARES = 256

_RS = reedsolo.RSCodec(RS_PARITY_LEN)


def plan(outer_len: int) -> tuple[int, int]:
    """(k, n) for an outer message of ``outer_len`` bytes (section 6, step 2).

    k = max(1, ceil((len + 4) / 128)); parity = max(1, ceil(0.3 k)); n = k + parity.
    The reference computes ceil(0.3 k) in floating point, which equals the exact integer
    ceil(3k / 10) for every k it can encode.
    """
    if outer_len < 0:
        raise ValueError("a length is not negative")
    k = max(1, -(-(outer_len + _LENGTH.size) // BLOCK_LEN))
    parity = max(1, -(-3 * k // 10))
    return k, k + parity


def encode(outer: bytes) -> list[bytes]:
    """The n chunk blobs (168 bytes each, in share order) carrying ``outer``."""
    if len(outer) > MAX_OUTER_LEN:
        raise ValueError("an outer message is shorter than 2^32 bytes")
    k, n = plan(len(outer))
    if n > MAX_SHARES:
        raise ValueError(f"message too long: {n} chunks, at most {MAX_SHARES}")
    wrapped = _LENGTH.pack(len(outer)) + bytes(outer)
    wrapped += bytes(k * BLOCK_LEN - len(wrapped))
    blocks = tuple(wrapped[i * BLOCK_LEN:(i + 1) * BLOCK_LEN] for i in range(k))
    return [_wrap_share(bytes(share)) for share in zfec.Encoder(k, n).encode(blocks)]


def chunk_hashes(blobs) -> list[bytes]:
    """H(blob) of each chunk blob: the per-chunk hashes the slot manifest signs."""
    return [chunk_hash(blob) for blob in blobs]


def decode(k: int, n: int, shares_by_index: dict[int, bytes],
           hashes: list[bytes] | None) -> bytes | None:
    """The outer message rebuilt from chunk blobs keyed by share index, or None.

    ``hashes`` are the manifest's n chunk hashes; with None, blobs are trusted on their
    checksum alone. Never raises.
    """
    if not _valid_shape(k, n, hashes):
        return None
    held: dict[int, bytes] = {}
    for index in sorted(i for i in shares_by_index if isinstance(i, int) and 0 <= i < n):
        share = _accepted_share(shares_by_index[index], hashes[index] if hashes else None)
        if share is not None:
            held[index] = share
        if len(held) == k:
            break
    if len(held) < k:
        return None
    indexes = tuple(held)
    blocks = zfec.Decoder(k, n).decode(tuple(held[i] for i in indexes), indexes)
    return _unwrap_blocks(k, b"".join(bytes(block) for block in blocks))


def repair_chunk(blob: bytes) -> bytes | None:
    """``blob`` with up to 16 byte errors corrected, or None if it cannot be repaired.

    The repaired share must match the blob's 8-byte checksum; the returned blob is rebuilt
    from it, so its parity is clean too.
    """
    share = _share_of(blob)
    return None if share is None else _wrap_share(share)


def _wrap_share(share: bytes) -> bytes:
    """checksum || share || RS parity; reedsolo's output is the share then its parity."""
    return make_blob(share, bytes(_RS.encode(share))[BLOCK_LEN:])


def _accepted_share(blob, expected_hash: bytes | None) -> bytes | None:
    """The share a received blob carries, if its manifest hash (when known) and checksum
    (after RS repair if needed) hold."""
    if not isinstance(blob, (bytes, bytearray)):
        return None
    if expected_hash is not None and chunk_hash(bytes(blob)) != bytes(expected_hash):
        return None
    return _share_of(blob)


def _share_of(blob) -> bytes | None:
    """The 128-byte share of a chunk blob; RS decoding only when the checksum fails."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) != CHUNK_LEN:
        return None
    if checksum_ok(blob):
        return bytes(blob[CHECKSUM_LEN:CHECKSUM_LEN + BLOCK_LEN])
    try:
        _, corrected, _ = _RS.decode(bytes(blob[CHECKSUM_LEN:]))
    except reedsolo.ReedSolomonError:
        return None
    # The checksum is outside the RS codeword; it must match the corrected share.
    repaired_blob = bytes(blob[:CHECKSUM_LEN]) + bytes(corrected)
    return repaired_blob[CHECKSUM_LEN:CHECKSUM_LEN + BLOCK_LEN] if checksum_ok(repaired_blob) \
        else None


def _valid_shape(k, n, hashes) -> bool:
    if not (isinstance(k, int) and isinstance(n, int) and 1 <= k <= n <= MAX_SHARES):
        return False
    return hashes is None or (isinstance(hashes, (list, tuple)) and len(hashes) == n
                              and all(isinstance(h, (bytes, bytearray)) for h in hashes))


def _unwrap_blocks(k: int, data: bytes) -> bytes | None:
    """outer from ``u32_be(L) || outer || padding``; L <= k*128 - 4 (section 6.1 step 3)."""
    (length,) = _LENGTH.unpack_from(data)
    if length > k * BLOCK_LEN - _LENGTH.size:
        return None
    return data[_LENGTH.size:_LENGTH.size + length]
