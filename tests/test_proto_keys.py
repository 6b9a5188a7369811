"""Key derivation (docs/wire-format.md §2): passphrase vectors, vector seeds, fingerprint."""

import hashlib

import pytest

from dmfdns.proto import keys
from dmfdns.proto.signing import verify

# Section 2.1: computed with the reference and re-derived independently.
DERIVATION_VECTORS = [
    ("correct horse battery staple", bytes(range(32)),
     "e79aa0f1f52113b64d3a5c767fcb8612fbbfa8ba4c8ced81fff2545296be148b",
     "55d5445273d359883111a517e5aca0f6e320ed235e2730b6d0c2af5cb1ad3877",
     "b93debb39be8e04e24f8462d6c41d7c3af0844c6014ef2dab6714231f7d1ef80"),
    ("hunter2", b"DMP-default-v2-argon2id",
     "bbcc3261b319645a3868c76b8abb0d49c54a76006c5a9f55492555072b782703",
     "a8ebcd8fbca98043ce51812bf5588a1bee4941820951a4dffe27d426b4662864",
     "6a4f5a84f95178a6d2bd06cb7aa6dc50e37e51f326ff5918962f14935ba0fc7d"),
]


@pytest.mark.parametrize("passphrase,salt,x_priv,x_pub,ed_pub", DERIVATION_VECTORS,
                         ids=["explicit-salt", "default-salt"])
def test_passphrase_derivation_vectors(passphrase, salt, x_priv, x_pub, ed_pub):
    user = keys.UserKeys.from_passphrase(passphrase, salt)
    assert user.x25519_private.hex() == x_priv
    assert user.x25519_public.hex() == x_pub
    assert user.ed25519_public.hex() == ed_pub


def test_default_salt_is_the_library_default():
    assert keys.passphrase_to_x25519("hunter2").hex() == DERIVATION_VECTORS[1][2]


def test_user_id_of_the_first_vector():
    user = keys.UserKeys.from_x25519_private(bytes.fromhex(DERIVATION_VECTORS[0][2]))
    assert user.user_id.hex() == (
        "7d59a7e134af369bfdea398813ea5b58545895af52d855ed25a7b71459f47288")


def test_vector_seed_for_alice():
    """Section 2.2: seed = H(label) used as the raw X25519 key, Ed25519 derived from it."""
    seed = hashlib.sha256(b"vectors/identity/alice").digest()
    assert seed.hex().startswith("08c240c6") and seed.hex().endswith("21da")
    user = keys.UserKeys.from_x25519_private(seed)
    assert user.x25519_public.hex() == (
        "9cfcecee647bf53742ff71cead91fb894a409c6e1d5f6127f3d01f1729e70e11")
    assert user.signer.seed.hex().startswith("ae5d25f4")
    assert user.signer.seed.hex().endswith("8670")
    assert user.ed25519_public.hex() == (
        "293c1c181315c368e21344d717faef768dc1bbc5d1d2dcde62a2d77888441575")


def test_derived_signer_signs_verifiably():
    user = keys.UserKeys.from_x25519_private(hashlib.sha256(b"signer").digest())
    signature = user.signer.sign(b"payload")
    assert verify(user.ed25519_public, signature, b"payload")
    assert not verify(user.ed25519_public, signature, b"payloae")


def test_fingerprint_is_hex16_of_both_public_keys():
    x_pub = bytes.fromhex(DERIVATION_VECTORS[0][3])
    ed_pub = bytes.fromhex(DERIVATION_VECTORS[0][4])
    expected = hashlib.sha256(x_pub + ed_pub).hexdigest()[:16]
    assert keys.fingerprint(x_pub, ed_pub) == expected
    assert keys.fingerprint(ed_pub, x_pub) != expected


def test_short_salt_and_wrong_key_length_are_refused():
    with pytest.raises(ValueError):
        keys.passphrase_to_x25519("pw", b"1234567")
    with pytest.raises(ValueError):
        keys.UserKeys.from_x25519_private(bytes(31))


def test_private_key_is_not_in_repr():
    user = keys.UserKeys.from_x25519_private(bytes.fromhex(DERIVATION_VECTORS[0][2]))
    assert DERIVATION_VECTORS[0][2] not in repr(user)
