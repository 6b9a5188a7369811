"""Key rotation and revocation for user identities (docs/wire-format.md §4.7, 4.8, 10).

Our side: ``rotate`` hands the identity over to a fresh key with a rotation record co-signed
by the old and the new key, and publishes the new identity record; the old X25519 key is kept
(sealed) to open messages still addressed to it. ``revoke`` publishes a revocation signed by
the current key; it is permanent. Both records live in the ``rotate.`` RRset next to the
identity name and are republished with the identity, because a node keeps a value at most a
day.

Their side: ``follow`` fetches a contact's rotate RRset(s) and walks the chain from the pinned
key (``walk_chain``, the rules of section 10): a revoked pinned key makes the contact refused;
a clean chain moves the pin to its head.
"""

import secrets as random_source
from dataclasses import dataclass

from ..proto import owners, revocation, rotation
from ..proto.keys import UserKeys
from . import identity_ops
from .gather import all_of
from .state import Contact, Profile, RetiredKey

MAX_HOPS = 4
ROTATION_LIFETIME = 365 * 86400
RECORD_TTL = 86400

UNCHANGED, ROTATED, REVOKED, BROKEN = "unchanged", "rotated", "revoked", "broken"


@dataclass(frozen=True)
class ChainResult:
    status: str              # one of UNCHANGED, ROTATED, REVOKED, BROKEN
    head: bytes              # the key to trust now (the pinned one unless ROTATED)
    reason: str = ""


def walk_chain(pinned: bytes, rotations, revoked_keys, max_hops: int = MAX_HOPS) -> ChainResult:
    """Follow verified ``rotations`` from ``pinned``; ``revoked_keys`` are verified revocations'
    keys. Forks, non-increasing seq, loops, revoked successors and over-long chains break the
    walk (the pinned key stays, nothing moves)."""
    revoked = set(revoked_keys)
    if pinned in revoked:
        return ChainResult(REVOKED, pinned, "the pinned key is revoked")
    head, visited, last_seq, hops = pinned, {pinned}, -1, 0
    while True:
        candidates = [r for r in rotations if r.old_spk == head]
        if not candidates:
            break
        if hops == max_hops:
            return ChainResult(BROKEN, pinned, f"chain longer than {max_hops} hops")
        if len({r.new_spk for r in candidates}) > 1:
            return ChainResult(BROKEN, pinned, "the chain forks")
        step = min(candidates, key=lambda r: r.seq)
        if step.seq <= last_seq:
            return ChainResult(BROKEN, pinned, "seq does not increase along the chain")
        if step.new_spk in revoked or step.new_spk in visited:
            return ChainResult(BROKEN, pinned, "the chain leads to a revoked or seen key")
        head, last_seq, hops = step.new_spk, step.seq, hops + 1
        visited.add(head)
    return ChainResult(ROTATED if hops else UNCHANGED, head)


def rotate_names(user: str, host: str) -> list[str]:
    return [owners.rotate_user_anchored(host), owners.rotate_user_hashed(user, host)]


def own_rotate_owner(profile: Profile) -> str:
    if profile.identity_domain:
        return owners.rotate_user_anchored(profile.identity_domain)
    return owners.rotate_user_hashed(profile.username, profile.zone)


async def fetch_chain_records(net, user: str, host: str, now: int):
    """(rotations, revoked keys) verified for the subject ``user@host``."""
    subject = f"{user}@{host}"
    values = []
    for name in rotate_names(user, host):
        for value in await net.reader.read(name):
            if value not in values:
                values.append(value)
    rotations, revoked = [], []
    for value in values:
        record = rotation.parse_and_verify(value, now=now, expected_subject=subject)
        if record is not None and record.subject_type == rotation.SUBJECT_USER:
            rotations.append(record)
            continue
        retired = revocation.parse_and_verify(value, now=now, expected_subject=subject)
        if retired is not None and retired.subject_type == rotation.SUBJECT_USER:
            revoked.append(retired.revoked_spk)
    return rotations, revoked


async def follow(net, contact: Contact, now: int) -> ChainResult:
    """Update ``contact`` from its rotate RRset: refuse a revoked key, move a rotated pin."""
    rotations, revoked = await fetch_chain_records(net, contact.user, contact.domain, now)
    result = walk_chain(contact.ed25519, rotations, revoked)
    if result.status == REVOKED:
        contact.revoked = True
    elif result.status == ROTATED:
        found = await identity_ops.find_identity(net, contact.address, now,
                                                 expected_spk=result.head)
        contact.ed25519 = result.head
        if found is not None:
            contact.x25519 = found.record.x25519_pk
            contact.versions = tuple(found.record.versions)
    return result


async def rotate(net, profile: Profile, state, now: int, rng=random_source) -> str:
    """Move our identity to a fresh key; returns the rotation record published.

    ``profile`` and ``state`` change only once both records were published (the caller
    saves them), so a failed rotation leaves the old key in charge.
    """
    old = state.keys
    new = UserKeys.from_x25519_private(rng.token_bytes(32))
    wire = rotation.sign(rotation.SUBJECT_USER, profile.address, old.ed25519_public,
                         new.ed25519_public, seq=int(now * 1000), ts=int(now),
                         exp=int(now) + ROTATION_LIFETIME, old_signer=old.signer,
                         new_signer=new.signer)
    await all_of([net.writer.publish(own_rotate_owner(profile), wire, RECORD_TTL),
                  net.writer.publish(identity_ops.own_identity_owner(profile),
                                     identity_ops.own_identity_record(profile, new, now),
                                     identity_ops.IDENTITY_TTL)])
    state.retired_keys.append(RetiredKey(old.x25519_private, int(now)))
    state.x25519_private = new.x25519_private
    state.published.append(wire)
    profile.x25519_public, profile.ed25519_public = new.x25519_public, new.ed25519_public
    return wire


async def revoke(net, profile: Profile, state, now: int,
                 reason: int = revocation.REASON_COMPROMISE) -> str:
    """Publish a permanent revocation of our current key; returns the record."""
    keys = state.keys
    wire = revocation.sign(rotation.SUBJECT_USER, profile.address, keys.ed25519_public, reason,
                           int(now), keys.signer)
    await net.writer.publish(own_rotate_owner(profile), wire, RECORD_TTL)
    state.revoked = True
    state.published.append(wire)
    return wire


async def republish(net, profile: Profile, state) -> int:
    """Publish our rotation and revocation records again (node values live a day)."""
    await all_of(net.writer.publish(own_rotate_owner(profile), wire, RECORD_TTL)
                 for wire in state.published)
    return len(state.published)
