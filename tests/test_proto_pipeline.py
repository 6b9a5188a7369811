"""A message through every pure layer: header, AAD, seal, outer, chunks and back again."""

import hashlib

import pytest

from dmfdns.proto import codec
from dmfdns.proto.envelope import unwrap, wrap
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.message import DMPHeader, aad, decode_outer, encode_outer
from dmfdns.proto.sealing import open_sealed, seal

ALICE = UserKeys.from_x25519_private(hashlib.sha256(b"vectors/identity/alice").digest())
BOB = UserKeys.from_x25519_private(hashlib.sha256(b"vectors/identity/bob").digest())
MSG_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
TS = 1893456000


def _send(text: str, recipient_pub: bytes, prekey_id: int = 0):
    """(header, outer message, chunk blobs) of a message from alice."""
    header = DMPHeader(MSG_ID, ALICE.user_id, BOB.user_id, ts=TS, ttl=300)
    plaintext = wrap(text.encode("utf-8"), "alice@mesh.test")
    payload = seal(plaintext, recipient_pub, aad(header, prekey_id))
    outer = encode_outer(header, payload)
    return header, outer, codec.encode(outer)


def _receive(k, n, received, hashes, private: bytes, prekey_id: int = 0):
    outer = codec.decode(k, n, received, hashes)
    if outer is None:
        return None
    parsed = decode_outer(outer)
    if parsed is None:
        return None
    header, payload = parsed
    plaintext = open_sealed(payload, private, aad(header, prekey_id))
    return None if plaintext is None else unwrap(plaintext)


def _drop_first(blobs, count) -> dict:
    return {j: blob for j, blob in enumerate(blobs) if j >= count}


def test_hello_bob_is_402_bytes_in_six_chunks():
    header = DMPHeader(MSG_ID, ALICE.user_id, BOB.user_id, ts=TS, ttl=300)
    plaintext = wrap(b"hello bob", "alice@mesh.test")
    assert len(plaintext) == 42
    outer = encode_outer(header, seal(plaintext, BOB.x25519_public, aad(header, 0)))
    assert len(outer) == 402
    assert codec.plan(len(outer)) == (4, 6)


@pytest.mark.parametrize("text", ["hello bob", "", "naïve ☃ " * 300])
def test_end_to_end_after_losing_parity_count_chunks(text):
    _, outer, blobs = _send(text, BOB.x25519_public)
    k, n = codec.plan(len(outer))
    hashes = codec.chunk_hashes(blobs)
    body, sender = _receive(k, n, _drop_first(blobs, n - k), hashes, BOB.x25519_private)
    assert body.decode("utf-8") == text
    assert sender == "alice@mesh.test"


def test_end_to_end_with_a_prekey():
    prekey_private = hashlib.sha256(b"tests/pipeline/prekey").digest()
    prekey = UserKeys.from_x25519_private(prekey_private)
    _, _, blobs = _send("forward secret", prekey.x25519_public, prekey_id=77)
    k, n = 4, 6
    assert len(blobs) == n
    received = _drop_first(blobs, 2)
    hashes = codec.chunk_hashes(blobs)
    assert _receive(k, n, received, hashes, prekey_private, 77) == (
        b"forward secret", "alice@mesh.test")
    # The AAD binds the prekey id, and the long-term key cannot open it.
    assert _receive(k, n, received, hashes, prekey_private, 0) is None
    assert _receive(k, n, received, hashes, BOB.x25519_private, 77) is None


def test_end_to_end_repairs_damaged_chunks_without_hashes():
    _, _, blobs = _send("hello bob", BOB.x25519_public)
    damaged = {}
    for j, blob in enumerate(blobs):
        corrupted = bytearray(blob)
        for position in range(40, 40 + 16):
            corrupted[position] ^= 0xFF
        damaged[j] = bytes(corrupted)
    assert _receive(4, 6, damaged, None, BOB.x25519_private) == (b"hello bob",
                                                                 "alice@mesh.test")


def test_a_tampered_header_breaks_the_aad():
    header, outer, _ = _send("hello bob", BOB.x25519_public)
    forged = encode_outer(DMPHeader(MSG_ID, ALICE.user_id, BOB.user_id, ts=TS + 1, ttl=300),
                          decode_outer(outer)[1])
    parsed_header, payload = decode_outer(forged)
    assert open_sealed(payload, BOB.x25519_private, aad(parsed_header, 0)) is None
    assert open_sealed(payload, BOB.x25519_private, aad(header, 0)) is not None
