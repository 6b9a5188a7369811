"""Sealing: X25519 + HKDF-SHA256 + ChaCha20-Poly1305 (docs/wire-format.md §5.3)."""

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, strategies as st

from dmfdns.proto.keys import x25519_public
from dmfdns.proto.sealing import open_sealed, seal

BOB_PRIVATE = hashlib.sha256(b"tests/sealing/bob").digest()
BOB_PUBLIC = x25519_public(BOB_PRIVATE)
EPHEMERAL = hashlib.sha256(b"tests/sealing/ephemeral").digest()
NONCE = bytes(range(12))
AAD = b'{"v":1}' + bytes(4)
# A low-order point (order 8): X25519 with it gives an all-zero shared secret.
LOW_ORDER_POINT = bytes.fromhex(
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


def test_round_trip():
    sealed = seal(b"hello bob", BOB_PUBLIC, AAD)
    assert open_sealed(sealed, BOB_PRIVATE, AAD) == b"hello bob"


def test_layout_matches_the_construction_step_by_step():
    """E || nonce || ChaCha20-Poly1305(HKDF(X25519(e, R), "DMP-v1", info)).seal(...)."""
    sealed = seal(b"text", BOB_PUBLIC, AAD, ephemeral_private=EPHEMERAL, nonce=NONCE)
    ephemeral = X25519PrivateKey.from_private_bytes(EPHEMERAL)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(BOB_PUBLIC))
    key = HKDF(hashes.SHA256(), 32, salt=b"DMP-v1", info=b"DMP-Message-Encryption").derive(shared)
    expected = (ephemeral.public_key().public_bytes_raw() + NONCE
                + ChaCha20Poly1305(key).encrypt(NONCE, b"text", AAD))
    assert sealed == expected
    assert len(sealed) == 32 + 12 + len(b"text") + 16


def test_fresh_randomness_per_message():
    first, second = seal(b"m", BOB_PUBLIC, AAD), seal(b"m", BOB_PUBLIC, AAD)
    assert first[:32] != second[:32] and first[32:44] != second[32:44]


def test_empty_plaintext():
    sealed = seal(b"", BOB_PUBLIC, AAD)
    assert len(sealed) == 60
    assert open_sealed(sealed, BOB_PRIVATE, AAD) == b""


def test_wrong_key_is_none():
    sealed = seal(b"secret", BOB_PUBLIC, AAD)
    assert open_sealed(sealed, hashlib.sha256(b"eve").digest(), AAD) is None


def test_wrong_aad_is_none():
    sealed = seal(b"secret", BOB_PUBLIC, AAD)
    assert open_sealed(sealed, BOB_PRIVATE, AAD[:-1] + b"\x01") is None


@pytest.mark.parametrize("position", [0, 31, 32, 43, 44, -1])
def test_tampered_byte_is_none(position):
    sealed = bytearray(seal(b"secret message", BOB_PUBLIC, AAD))
    sealed[position] ^= 0x01
    assert open_sealed(bytes(sealed), BOB_PRIVATE, AAD) is None


def test_all_zero_shared_secret_is_none_not_an_exception():
    payload = LOW_ORDER_POINT + NONCE + bytes(20)
    assert open_sealed(payload, BOB_PRIVATE, AAD) is None


def test_sealing_to_a_low_order_key_is_a_clear_error():
    with pytest.raises(ValueError):
        seal(b"x", LOW_ORDER_POINT, AAD)


@pytest.mark.parametrize("length", [0, 1, 43])
def test_payload_shorter_than_44_is_none(length):
    assert open_sealed(bytes(length), BOB_PRIVATE, AAD) is None


def test_payload_without_a_full_tag_is_none():
    sealed = seal(b"", BOB_PUBLIC, AAD)
    assert open_sealed(sealed[:50], BOB_PRIVATE, AAD) is None


def test_bad_injected_nonce_or_recipient_length_is_refused():
    with pytest.raises(ValueError):
        seal(b"x", BOB_PUBLIC, AAD, nonce=bytes(11))
    with pytest.raises(ValueError):
        seal(b"x", BOB_PUBLIC[:31], AAD)


@given(st.binary(max_size=120))
def test_open_never_raises(payload):
    assert open_sealed(payload, BOB_PRIVATE, AAD) is None
