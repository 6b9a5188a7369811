"""The prekey record, ``v=dmp1;t=prekey;d=`` (docs/wire-format.md §4.4).

Body: ``prekey_id u32 (1..2^32-1) || x25519_pub 32 || exp u64`` (44 bytes) and an Ed25519
signature by the owner's identity key. The record does not name its signer, so the verifier
supplies the expected key; without one only the structure can be checked
(``decode_unverified``), which is what a node does when it holds no identity for the owner.
The parser applies only the 30-day cap on ``exp``; the caller drops expired prekeys
(``is_expired``).
"""

import struct
from dataclasses import dataclass

from . import b64, prefixes
from .signing import PUBLIC_KEY_LEN, SIGNATURE_LEN, Signer, verify

MAX_PREKEY_ID = 2**32 - 1
MAX_U64 = 2**64 - 1
MAX_AHEAD = 30 * 86400  # exp may lie at most 30 days after now (section 1.5)
_BODY = struct.Struct(">I32sQ")
BLOB_LEN = _BODY.size + SIGNATURE_LEN  # 108
WIRE_LEN = len(prefixes.PREKEY) + 144  # 162


@dataclass(frozen=True)
class Prekey:
    prekey_id: int
    public_key: bytes
    exp: int


def sign(prekey_id: int, public_key: bytes, exp: int, signer: Signer) -> str:
    """The TXT string of a prekey signed by the owner's identity ``signer``."""
    if not 1 <= prekey_id <= MAX_PREKEY_ID:
        raise ValueError("prekey_id is 1..2^32-1 (0 means 'no prekey')")
    if len(public_key) != PUBLIC_KEY_LEN:
        raise ValueError("an X25519 public key is 32 bytes")
    if not 0 <= exp <= MAX_U64:
        raise ValueError("exp is a u64")
    body = _BODY.pack(prekey_id, bytes(public_key), exp)
    return prefixes.PREKEY + b64.encode(body + signer.sign(body))


def _split(wire) -> tuple[Prekey, bytes, bytes] | None:
    """(record, body, signature) of a structurally valid prekey value, or None."""
    if not isinstance(wire, str) or len(wire) != WIRE_LEN:
        return None
    blob = b64.decode_after_prefix(wire, prefixes.PREKEY)
    if blob is None or len(blob) != BLOB_LEN:
        return None
    body, signature = blob[:_BODY.size], blob[_BODY.size:]
    prekey_id, public_key, exp = _BODY.unpack(body)
    if prekey_id == 0:
        return None
    return Prekey(prekey_id, public_key, exp), body, signature


def decode_unverified(wire) -> Prekey | None:
    """The prekey if its structure is valid; the signature is NOT checked."""
    parts = _split(wire)
    return None if parts is None else parts[0]


def decode(wire, signer_spk: bytes) -> Prekey | None:
    """Structure plus the signature by ``signer_spk`` (the owner's Ed25519 key); no time rules."""
    parts = _split(wire)
    if parts is None:
        return None
    record, body, signature = parts
    if not verify(signer_spk, signature, body):
        return None
    return record


def is_expired(record: Prekey, now: int) -> bool:
    return now > record.exp


def time_problem(record: Prekey, now: int) -> str | None:
    if is_expired(record, now):
        return "expired"
    if record.exp - now > MAX_AHEAD:
        return "expiry more than 30 days ahead"
    return None


def parse_and_verify(wire, signer_spk: bytes, *, now: int) -> Prekey | None:
    """``decode`` + the parser's 30-day cap; expiry is left to the caller (``is_expired``)."""
    record = decode(wire, signer_spk)
    if record is None or record.exp - now > MAX_AHEAD:
        return None
    return record
