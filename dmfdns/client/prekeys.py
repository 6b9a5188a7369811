"""One-time prekeys: forward secrecy for messages (docs/wire-format.md §4.4 and 8).

The owner publishes a pool of fresh X25519 public keys, each signed with the identity key,
at ``prekeys.id-{hex12(H(username))}.{zone}`` and keeps the private halves (sealed in the
state). A sender that has pinned the owner's Ed25519 key picks one verified, unexpired
prekey uniformly at random and seals to it. The receiver burns a prekey only after a message
sealed to it decrypted: the private key is forgotten, and the published value is deleted so
no later sender picks it. A message for an unknown or expired prekey is dropped.
"""

import secrets as random_source

from ..proto import owners, prekey
from ..proto.keys import x25519_public
from .gather import all_of
from .state import Contact, PrekeySecret, Profile
from .writer import WriteError

DEFAULT_POOL_SIZE = 25
DEFAULT_PREKEY_TTL = 86400


def pool_owner(username: str, zone: str) -> str:
    return owners.prekeys(username, zone)


def generate(signer, count: int, now: int, ttl: int = DEFAULT_PREKEY_TTL,
             rng=random_source) -> list[PrekeySecret]:
    """``count`` fresh prekeys with distinct random ids 1..2^32-1, expiring at now + ttl."""
    made, ids = [], set()
    while len(made) < count:
        prekey_id = 1 + rng.randbelow(prekey.MAX_PREKEY_ID)
        if prekey_id in ids:
            continue
        ids.add(prekey_id)
        private = rng.token_bytes(32)
        public = x25519_public(private)
        exp = int(now) + int(ttl)
        made.append(PrekeySecret(prekey_id, private, public, exp,
                                 prekey.sign(prekey_id, public, exp, signer)))
    return made


async def refresh(net, profile: Profile, state, count: int, now: int,
                  ttl: int = DEFAULT_PREKEY_TTL) -> list[PrekeySecret]:
    """Top the pool up to ``count`` live prekeys and (re)publish all of them; returns the
    new ones.

    Expired prekeys are forgotten. Live ones are published again with their remaining
    lifetime, which repairs a node that missed them and never grows the RRset past the
    node's 64-value cap. Private keys are added to ``state`` before anything is published,
    so a message sealed to a prekey that made it out can always be opened.
    """
    state.prekeys = [p for p in state.prekeys if not now > p.exp]
    fresh = generate(state.keys.signer, max(0, count - len(state.prekeys)), now, ttl)
    state.prekeys.extend(fresh)
    owner = pool_owner(profile.username, profile.zone)
    await all_of(net.writer.publish(owner, item.wire, max(1, item.exp - int(now)))
                 for item in state.prekeys)
    return fresh


def spent_key(contact: Contact, prekey_id: int) -> str:
    return f"{contact.ed25519.hex()}:{prekey_id}"


async def pick(net, contact: Contact, now: int, rng=random_source,
               spent=()) -> tuple[int, bytes, int]:
    """(prekey_id, X25519 key, exp) to seal to: a random verified unexpired prekey of the
    contact that is not in ``spent`` (keys from ``spent_key``), or (0, its long-term key, 0)
    when there is none.

    A prekey opens one message only (the receiver burns it), so a sender that already used
    one must not pick it again before the receiver's delete reaches the nodes.
    """
    owner = pool_owner(contact.user, contact.domain)
    values = await net.reader.read(owner)
    usable = []
    for value in values:
        record = prekey.parse_and_verify(value, contact.ed25519, now=now)
        if (record is not None and not prekey.is_expired(record, now)
                and spent_key(contact, record.prekey_id) not in spent):
            usable.append(record)
    if not usable:
        return 0, contact.x25519, 0
    chosen = usable[rng.randbelow(len(usable))]
    return chosen.prekey_id, chosen.public_key, chosen.exp


def private_for(state, prekey_id: int, now: int) -> PrekeySecret | None:
    """Our prekey ``prekey_id`` if we hold it and it has not expired."""
    for item in state.prekeys:
        if item.prekey_id == prekey_id and not now > item.exp:
            return item
    return None


async def burn(net, profile: Profile, state, item: PrekeySecret) -> bool:
    """Forget ``item`` locally, then delete its published value; True if the delete was
    acknowledged (the local key is gone either way, which is what forward secrecy needs)."""
    state.prekeys = [p for p in state.prekeys if p.prekey_id != item.prekey_id]
    try:
        await net.writer.delete(pool_owner(profile.username, profile.zone), item.wire)
    except WriteError:  # a node being down must not undo the burn; the value expires anyway
        return False
    return True
