"""The slot manifest, ``v=dmp1;t=manifest;d=`` (docs/wire-format.md §4.2).

Body: ``msg_id 16 || sender_spk 32 || recipient_id 32 || total_chunks u32 || data_chunks u32
|| prekey_id u32 || ts u64 || exp u64`` (108 bytes), then ``H(chunk blob i)`` for every chunk
i, then an Ed25519 signature by ``sender_spk`` over the body.

The reference parser still accepts the legacy form without chunk hashes (the canonical
vectors use it), but the current receiver refuses to decode such a message, so ``sign``
produces it only when asked with ``legacy=True``. The parser applies only the 30-day cap on
``exp``; whether the message has expired is the caller's decision (``is_expired``).
"""

import struct
from dataclasses import dataclass

from . import b64, prefixes
from .signing import PUBLIC_KEY_LEN, SIGNATURE_LEN, Signer, split_signatures, verify

MSG_ID_LEN = 16
HASH_LEN = 32
MAX_CHUNKS = 1024
MAX_PREKEY_ID = 2**32 - 1
MAX_U64 = 2**64 - 1
MAX_AHEAD = 30 * 86400  # exp may lie at most 30 days after now (section 1.5)

_HEADER = struct.Struct(">16s32s32sIIIQQ")
HEADER_LEN = _HEADER.size  # 108
LEGACY_BLOB_LEN = HEADER_LEN + SIGNATURE_LEN  # 172


@dataclass(frozen=True)
class SlotManifest:
    msg_id: bytes
    sender_spk: bytes
    recipient_id: bytes
    total_chunks: int
    data_chunks: int
    prekey_id: int
    ts: int
    exp: int
    chunk_hashes: tuple[bytes, ...] = ()

    @property
    def legacy(self) -> bool:
        """True for the hash-less form current receivers refuse."""
        return not self.chunk_hashes


def sign(msg_id: bytes, sender_spk: bytes, recipient_id: bytes, total_chunks: int,
         data_chunks: int, prekey_id: int, ts: int, exp: int, chunk_hashes,
         signer: Signer, *, legacy: bool = False) -> str:
    """The TXT string of a manifest signed by ``signer`` (whose key must be ``sender_spk``).

    ``chunk_hashes`` must hold exactly ``total_chunks`` 32-byte hashes; pass an empty list
    together with ``legacy=True`` to produce the hash-less form.
    """
    hashes = [bytes(h) for h in chunk_hashes]
    _check_sign_inputs(msg_id, sender_spk, recipient_id, total_chunks, data_chunks,
                       prekey_id, ts, exp, hashes, legacy)
    if bytes(sender_spk) != signer.public_key:
        raise ValueError("sender_spk is not the signer's public key")
    body = _HEADER.pack(bytes(msg_id), bytes(sender_spk), bytes(recipient_id), total_chunks,
                        data_chunks, prekey_id, ts, exp) + b"".join(hashes)
    return prefixes.SLOT_MANIFEST + b64.encode(body + signer.sign(body))


def _check_sign_inputs(msg_id, sender_spk, recipient_id, total_chunks, data_chunks,
                       prekey_id, ts, exp, hashes, legacy) -> None:
    if len(msg_id) != MSG_ID_LEN:
        raise ValueError("msg_id is 16 bytes")
    if len(sender_spk) != PUBLIC_KEY_LEN or len(recipient_id) != HASH_LEN:
        raise ValueError("sender_spk and recipient_id are 32 bytes")
    if not 1 <= data_chunks <= total_chunks <= MAX_CHUNKS:
        raise ValueError("need 1 <= data_chunks <= total_chunks <= 1024")
    if not 0 <= prekey_id <= MAX_PREKEY_ID:
        raise ValueError("prekey_id is a u32")
    if not (0 <= ts <= MAX_U64 and 0 <= exp <= MAX_U64):
        raise ValueError("ts and exp are u64")
    if legacy:
        if hashes:
            raise ValueError("a legacy manifest carries no chunk hashes")
        return
    if len(hashes) != total_chunks or any(len(h) != HASH_LEN for h in hashes):
        raise ValueError("need one 32-byte hash per chunk (receivers refuse hash-less "
                         "manifests; pass legacy=True to produce one anyway)")


def decode(wire) -> SlotManifest | None:
    """Prefix, base64, layout and the signature by the embedded sender_spk; no time rules."""
    blob = b64.decode_after_prefix(wire, prefixes.SLOT_MANIFEST)
    if blob is None or len(blob) < LEGACY_BLOB_LEN:
        return None
    total = struct.unpack_from(">I", blob, 80)[0]
    if len(blob) not in (LEGACY_BLOB_LEN, LEGACY_BLOB_LEN + HASH_LEN * total):
        return None
    body, (signature,) = split_signatures(blob)
    msg_id, spk, recipient, total, data, prekey_id, ts, exp = _HEADER.unpack_from(body)
    if not 1 <= data <= total <= MAX_CHUNKS:
        return None
    if not verify(spk, signature, body):
        return None
    tail = body[HEADER_LEN:]
    hashes = tuple(tail[i:i + HASH_LEN] for i in range(0, len(tail), HASH_LEN))
    return SlotManifest(msg_id, spk, recipient, total, data, prekey_id, ts, exp, hashes)


def is_expired(record: SlotManifest, now: int) -> bool:
    return now > record.exp


def time_problem(record: SlotManifest, now: int) -> str | None:
    if is_expired(record, now):
        return "expired"
    if record.exp - now > MAX_AHEAD:
        return "expiry more than 30 days ahead"
    return None


def parse_and_verify(wire, *, now: int, expected_sender_spk: bytes | None = None,
                     expected_recipient_id: bytes | None = None) -> SlotManifest | None:
    """``decode`` + the parser's 30-day cap + optional sender/recipient bindings.

    Expiry (``now > exp``) is left to the caller, as in the reference.
    """
    record = decode(wire)
    if record is None or record.exp - now > MAX_AHEAD:
        return None
    if expected_sender_spk is not None and record.sender_spk != bytes(expected_sender_spk):
        return None
    if expected_recipient_id is not None and record.recipient_id != bytes(expected_recipient_id):
        return None
    return record
