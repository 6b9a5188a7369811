"""Ed25519 signing and the verification policy shared by every record (docs/wire-format.md §1.3).

Pure Ed25519 (RFC 8032, no prehash, no context). Before verifying, a public key that is one
of the 14 known low-order or small-subgroup encodings is rejected. Nothing here raises on
bad input: verification answers True or False.
"""

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from . import b64

SIGNATURE_LEN = 64
PUBLIC_KEY_LEN = 32
SEED_LEN = 32

LOW_ORDER_KEYS = frozenset(bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
))


def is_low_order(public_key: bytes) -> bool:
    return bytes(public_key) in LOW_ORDER_KEYS


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if (not isinstance(public_key, (bytes, bytearray)) or len(public_key) != PUBLIC_KEY_LEN
            or len(signature) != SIGNATURE_LEN or is_low_order(public_key)):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(signature),
                                                                     bytes(message))
    except (InvalidSignature, ValueError):
        return False
    return True


class Signer:
    """An Ed25519 private key: ``sign(message)`` and its 32-byte ``public_key``."""

    def __init__(self, seed: bytes):
        if len(seed) != SEED_LEN:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(seed))
        self.seed = bytes(seed)
        self.public_key = self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Signer(public_key={self.public_key.hex()})"


def split_signatures(blob: bytes, count: int = 1) -> tuple[bytes, list[bytes]] | None:
    """Split ``count`` trailing 64-byte signatures off ``blob``: (body, [sig, ...]) or None."""
    tail = SIGNATURE_LEN * count
    if len(blob) < tail:
        return None
    body = blob[:-tail]
    sigs = [blob[len(body) + i * SIGNATURE_LEN: len(body) + (i + 1) * SIGNATURE_LEN]
            for i in range(count)]
    return body, sigs


def split_signed_value(wire, prefix: str, max_wire: int,
                       count: int = 1) -> tuple[bytes, list[bytes]] | None:
    """(body, [sig, ...]) of the TXT value ``prefix + base64(body || sig...)``, or None.

    A value longer than ``max_wire`` characters is refused before it is decoded, so a huge
    value costs nothing; a blob too short for its signatures is None.
    """
    if not isinstance(wire, str) or len(wire) > max_wire:
        return None
    blob = b64.decode_after_prefix(wire, prefix)
    return None if blob is None else split_signatures(blob, count)


def decode_self_signed(wire, prefix: str, max_wire: int, parse_body, keys, count: int = 1):
    """The record ``parse_body`` makes of a signed TXT value whose own keys sign it, or None.

    ``keys(record)`` gives the public key of each of the ``count`` trailing signatures, in
    order (identity-style records carry the keys that sign them, docs/wire-format.md §1.3).
    """
    parts = split_signed_value(wire, prefix, max_wire, count)
    if parts is None:
        return None
    body, signatures = parts
    record = parse_body(body)
    if record is None or not all(verify(key, signature, body)
                                 for key, signature in zip(keys(record), signatures)):
        return None
    return record


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
