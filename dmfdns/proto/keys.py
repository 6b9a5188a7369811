"""User key material (docs/wire-format.md §2).

A passphrase becomes a raw X25519 private key with Argon2id; the Ed25519 signing seed is
``H(x25519_priv || "DMP-v1-Ed25519-signing-key")``; the user id is ``H(x25519_pub)``.
Operator keys (cluster, bootstrap, heartbeat) are plain Ed25519 seeds instead (section 2.3).
"""

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from .signing import Signer, sha256

DEFAULT_SALT = b"DMP-default-v2-argon2id"
SIGNING_DOMAIN = b"DMP-v1-Ed25519-signing-key"
MIN_SALT_LEN = 8
# Argon2id cost parameters fixed by the protocol (section 2.1).
ARGON2_ITERATIONS = 2
ARGON2_MEMORY_KIB = 32768
ARGON2_LANES = 2
KEY_LEN = 32


def passphrase_to_x25519(passphrase: str, salt: bytes = DEFAULT_SALT) -> bytes:
    """The raw (unclamped) 32-byte X25519 private key for ``passphrase`` and ``salt``."""
    if len(salt) < MIN_SALT_LEN:
        raise ValueError(f"salt must be at least {MIN_SALT_LEN} bytes")
    kdf = Argon2id(salt=bytes(salt), length=KEY_LEN, iterations=ARGON2_ITERATIONS,
                   lanes=ARGON2_LANES, memory_cost=ARGON2_MEMORY_KIB)
    return kdf.derive(passphrase.encode("utf-8"))


def x25519_public(private_raw: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(bytes(private_raw))
    return key.public_key().public_bytes_raw()


@dataclass(frozen=True)
class UserKeys:
    """A user identity's key pair set, derived from its raw X25519 private key."""

    x25519_private: bytes = field(repr=False)
    x25519_public: bytes
    signer: Signer = field(repr=False)
    user_id: bytes

    @property
    def ed25519_public(self) -> bytes:
        return self.signer.public_key

    @classmethod
    def from_x25519_private(cls, private_raw: bytes) -> "UserKeys":
        if len(private_raw) != KEY_LEN:
            raise ValueError("an X25519 private key is 32 bytes")
        public = x25519_public(private_raw)
        signer = Signer(sha256(bytes(private_raw) + SIGNING_DOMAIN))
        return cls(bytes(private_raw), public, signer, sha256(public))

    @classmethod
    def from_passphrase(cls, passphrase: str, salt: bytes = DEFAULT_SALT) -> "UserKeys":
        return cls.from_x25519_private(passphrase_to_x25519(passphrase, salt))


def fingerprint(x25519_pk: bytes, ed25519_spk: bytes) -> str:
    """The display fingerprint of an identity: hex16(H(x25519_pk || ed25519_spk))."""
    return sha256(x25519_pk + ed25519_spk).hex()[:16]
