"""Message sealing: X25519 ECDH, HKDF-SHA256, ChaCha20-Poly1305 (docs/wire-format.md §5.3).

Every message uses a fresh ephemeral key pair, so the derived key is fresh per message and
one random 12-byte nonce under it can never repeat. The sealed payload is
``E (32) || nonce (12) || ciphertext || tag (16)``.

Randomness is injectable (``ephemeral_private``, ``nonce``) so tests can be deterministic;
callers in production leave both out.
"""

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HKDF_SALT = b"DMP-v1"
HKDF_INFO = b"DMP-Message-Encryption"
KEY_LEN = 32
PUBLIC_KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
MIN_SEALED_LEN = PUBLIC_KEY_LEN + NONCE_LEN


def seal(plaintext: bytes, recipient_x25519_pub: bytes, aad: bytes, *,
         ephemeral_private: bytes | None = None, nonce: bytes | None = None) -> bytes:
    """Encrypt ``plaintext`` to ``recipient_x25519_pub``, binding ``aad``.

    Raises ValueError for a malformed recipient key or one that yields an all-zero shared
    secret (a low-order point): such a key cannot receive messages.
    """
    if len(recipient_x25519_pub) != PUBLIC_KEY_LEN:
        raise ValueError("an X25519 public key is 32 bytes")
    if nonce is None:
        nonce = secrets.token_bytes(NONCE_LEN)
    if len(nonce) != NONCE_LEN:
        raise ValueError("the nonce is 12 bytes")
    ephemeral = (X25519PrivateKey.generate() if ephemeral_private is None
                 else X25519PrivateKey.from_private_bytes(bytes(ephemeral_private)))
    recipient = X25519PublicKey.from_public_bytes(bytes(recipient_x25519_pub))
    key = _message_key(ephemeral.exchange(recipient))
    sealed = ChaCha20Poly1305(key).encrypt(bytes(nonce), bytes(plaintext), bytes(aad))
    return ephemeral.public_key().public_bytes_raw() + bytes(nonce) + sealed


def open_sealed(payload: bytes, recipient_x25519_private: bytes, aad: bytes) -> bytes | None:
    """The plaintext of a sealed payload, or None for any failure; never raises."""
    if (not isinstance(payload, (bytes, bytearray)) or len(payload) < MIN_SEALED_LEN
            or len(recipient_x25519_private) != KEY_LEN):
        return None
    ephemeral_pub = bytes(payload[:PUBLIC_KEY_LEN])
    nonce = bytes(payload[PUBLIC_KEY_LEN:MIN_SEALED_LEN])
    sealed = bytes(payload[MIN_SEALED_LEN:])
    try:
        private = X25519PrivateKey.from_private_bytes(bytes(recipient_x25519_private))
        # exchange() raises ValueError when the shared secret is all zeros.
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_pub))
        return ChaCha20Poly1305(_message_key(shared)).decrypt(nonce, sealed, bytes(aad))
    except (InvalidTag, ValueError):
        return None


def _message_key(shared: bytes) -> bytes:
    """HKDF-SHA256(IKM = shared, salt = "DMP-v1", info = "DMP-Message-Encryption", L = 32)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=HKDF_SALT,
                info=HKDF_INFO).derive(shared)
