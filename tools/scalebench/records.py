"""Valid DMP records in bulk, fast: every one passes dmfdns's write admission.

* identities: one signing key, a different username per record (the owner name is the
  hash of the username, which the signed body carries), so each is signed once (~50 µs);
* chunks: a pool of 256 valid chunk values (checksum over the block) spread over distinct
  chunk owner names; the wire format ties a chunk's value to no name, so names vary freely.

A record is ``(name, value)``; ``mixed`` interleaves the two kinds.
"""

import hashlib
import random

from dmfdns.proto import chunk, identity, owners
from dmfdns.proto.signing import Signer

POOL = 256


def identities(count: int, zone: str, *, seed: int = 1, start: int = 0):
    signer = Signer(hashlib.sha256(f"bench identity {seed}".encode()).digest())
    x25519 = hashlib.sha256(f"bench x25519 {seed}".encode()).digest()
    for i in range(start, start + count):
        username = f"user{seed}-{i}"
        value = identity.sign(username, x25519, signer.public_key, 1_700_000_000 + i, signer)
        yield owners.identity_hashed(username, zone), value


def chunk_pool(seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [chunk.encode(chunk.make_blob(rng.randbytes(chunk.BLOCK_LEN),
                                         rng.randbytes(chunk.PARITY_LEN)))
            for _ in range(POOL)]


def chunks(count: int, zone: str, *, seed: int = 1, start: int = 0):
    pool = chunk_pool(seed)
    for i in range(start, start + count):
        key = hashlib.sha256(f"msg {seed} {i // 8}".encode()).hexdigest()[:12]
        yield owners.chunk(i % 8, key, zone), pool[i % POOL]


def mixed(count: int, zone: str, *, identity_share: float = 0.2, seed: int = 1):
    """``count`` records, ``identity_share`` of them identities, the rest chunks."""
    n_identities = round(count * identity_share)
    ids = identities(n_identities, zone, seed=seed)
    parts = chunks(count - n_identities, zone, seed=seed)
    every = count / max(1, n_identities)
    made = 0
    for position in range(count):
        if made < n_identities and position >= made * every:
            made += 1
            yield next(ids)
        else:
            yield next(parts)
