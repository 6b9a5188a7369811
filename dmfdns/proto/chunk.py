"""The chunk record, ``v=dmp1;t=chunk;d=`` (docs/wire-format.md §4.1).

A chunk carries one erasure share: ``H(block)[0:8] || block (128) || RS parity (32)``, 168
bytes, no signature. Its integrity comes from the slot manifest's per-chunk hash
``H(blob)``; on the write path the 8-byte checksum is the only check possible, and it needs
no Reed-Solomon decode (the RS code is systematic, so the block is stored in the clear).

The reference reader splits the value on ``;`` into ``key=value`` pairs and ignores an ``m=``
(base64 JSON metadata) key. We accept exactly the sender's form, optionally followed by one
``;m=<canonical base64>`` pair: base64 has no ``;``, so the split is unambiguous, and the
metadata is bounded by ``MAX_WIRE``. Any other extra key, a repeated key or a different key
order is refused.
"""

from dataclasses import dataclass

from . import b64, prefixes
from .signing import sha256

CHECKSUM_LEN = 8
BLOCK_LEN = 128
PARITY_LEN = 32
BLOB_LEN = CHECKSUM_LEN + BLOCK_LEN + PARITY_LEN  # 168
WIRE_LEN = len(prefixes.CHUNK) + 224  # 241: what every sender emits
META_KEY = "m="
# Bound on a value carrying the optional metadata pair (the node's signed-record cap).
MAX_WIRE = prefixes.MAX_SIGNED_WIRE


@dataclass(frozen=True)
class Chunk:
    checksum: bytes
    block: bytes
    parity: bytes

    @property
    def blob(self) -> bytes:
        return self.checksum + self.block + self.parity

    @property
    def hash(self) -> bytes:
        """H(blob): what the slot manifest lists for this chunk."""
        return chunk_hash(self.blob)


def chunk_hash(blob: bytes) -> bytes:
    """H(blob), the per-chunk hash a slot manifest carries (section 4.2)."""
    return sha256(blob)


def checksum_ok(blob: bytes) -> bool:
    """True iff ``blob`` is 168 bytes whose first 8 equal H(block)[0:8]."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) != BLOB_LEN:
        return False
    block = blob[CHECKSUM_LEN:CHECKSUM_LEN + BLOCK_LEN]
    return sha256(bytes(block))[:CHECKSUM_LEN] == bytes(blob[:CHECKSUM_LEN])


def make_blob(block: bytes, parity: bytes) -> bytes:
    """The 168-byte chunk blob for a 128-byte share and its 32 RS parity bytes."""
    if len(block) != BLOCK_LEN or len(parity) != PARITY_LEN:
        raise ValueError(f"a chunk holds a {BLOCK_LEN}-byte block and {PARITY_LEN} parity bytes")
    return sha256(bytes(block))[:CHECKSUM_LEN] + bytes(block) + bytes(parity)


def encode(blob: bytes) -> str:
    """The exact TXT string for a 168-byte chunk blob (the sender's only form)."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) != BLOB_LEN:
        raise ValueError(f"a chunk blob is {BLOB_LEN} bytes")
    if not checksum_ok(blob):
        raise ValueError("chunk checksum does not match H(block)[0:8]")
    return prefixes.CHUNK + b64.encode(bytes(blob))


def read_blob(wire) -> bytes | None:
    """The 168-byte blob of a chunk value (structure only, checksum not checked), or None."""
    if not isinstance(wire, str) or len(wire) > MAX_WIRE:
        return None
    if not wire.startswith(prefixes.CHUNK):
        return None
    data, *extra = wire[len(prefixes.CHUNK):].split(";")
    if len(extra) > 1:
        return None
    if extra and not (extra[0].startswith(META_KEY)
                      and b64.decode(extra[0][len(META_KEY):]) is not None):
        return None
    blob = b64.decode(data)
    if blob is None or len(blob) != BLOB_LEN:
        return None
    return blob


def decode(wire) -> Chunk | None:
    """A chunk whose checksum holds, or None; never raises."""
    blob = read_blob(wire)
    if blob is None or not checksum_ok(blob):
        return None
    return Chunk(blob[:CHECKSUM_LEN], blob[CHECKSUM_LEN:CHECKSUM_LEN + BLOCK_LEN],
                 blob[CHECKSUM_LEN + BLOCK_LEN:])


def time_problem(record: Chunk, now: int) -> str | None:
    """Chunks carry no times; their lifetime is the DNS TTL the writer chose."""
    return None


def parse_and_verify(wire, *, now: int, expected_hash: bytes | None = None) -> Chunk | None:
    """``decode`` plus, when given, the manifest's hash for this chunk index."""
    record = decode(wire)
    if record is None:
        return None
    if expected_hash is not None and record.hash != bytes(expected_hash):
        return None
    return record
