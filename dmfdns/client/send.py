"""Sending a message (docs/wire-format.md §5, 6 and 9.1).

For each part of the text: pick the recipient key (a random verified prekey, else the
long-term key), build the header, seal the (DMPv2-wrapped) plaintext with the AAD that binds
the header and the prekey id, erasure-code the outer message into chunks, publish every chunk
in the sender's zone, and only then the signed slot manifest carrying the chunk hashes, so a
receiver that sees a manifest finds its chunks. Last, a claim at the recipient's zone
(``claims``): a recipient that has not pinned us does not walk our zone, and finds the
message through it (first contact). A failed claim does not fail the send.
"""

import secrets as random_source
import uuid
from dataclasses import dataclass

from ..proto import chunk, codec, owners, sealing, slot_manifest
from ..proto.message import DMPHeader, aad, encode_outer
from ..proto.signing import sha256
from . import claims, parts, prekeys
from .gather import all_of
from .state import Contact, Profile


class SendError(Exception):
    """The message cannot be sent (one line for the CLI)."""


@dataclass(frozen=True)
class SentMessage:
    msg_id: bytes
    prekey_id: int
    total_chunks: int
    data_chunks: int
    manifest_owner: str
    claimed: bool = False          # a node took the first-contact claim


def new_msg_id() -> bytes:
    """16 bytes of a random UUIDv4, version bits included (docs/wire-format.md §2.4)."""
    return uuid.uuid4().bytes


def recipient_id(contact: Contact) -> bytes:
    return sha256(contact.x25519)


def sender_address(profile: Profile, contact: Contact) -> str | None:
    """Our address for the DMPv2 envelope, only if the recipient advertises version 2."""
    return profile.address if 2 in tuple(contact.versions) else None


async def send_text(net, profile: Profile, state, contact: Contact, body: bytes, now: int,
                    *, rng=random_source) -> list[SentMessage]:
    """Send ``body`` to ``contact``; one ``SentMessage`` per part, in order."""
    if contact.blocked:
        raise SendError(f"{contact.address} is blocked; unblock it to send")
    if contact.revoked:
        raise SendError(f"{contact.address} revoked its key; fetch its identity again")
    if state.revoked:
        raise SendError("our identity key is revoked; nobody would accept its messages")
    keys = state.keys
    state.spent_prekeys = {k: exp for k, exp in state.spent_prekeys.items() if not now > exp}
    rid = recipient_id(contact)
    probe = DMPHeader(bytes(16), keys.user_id, rid, int(now), profile.message_ttl)
    try:
        plaintexts = parts.split(bytes(body), probe, sender_address(profile, contact),
                                 profile.max_record_bytes)
    except parts.MessageTooLong as exc:
        raise SendError(str(exc)) from None
    sent = []
    for plaintext in plaintexts:
        prekey_id, recipient_key, prekey_exp = await prekeys.pick(
            net, contact, now, rng, spent=state.spent_prekeys)
        if prekey_id:
            state.spent_prekeys[prekeys.spent_key(contact, prekey_id)] = prekey_exp
        message = await _send_one(net, profile, keys, rid, plaintext, prekey_id,
                                  recipient_key, now)
        claimed = await claims.publish(net, profile, keys, rid, contact.domain,
                                       message.msg_id, owners.slot_for(message.msg_id),
                                       int(now), profile.message_ttl)
        sent.append(SentMessage(message.msg_id, message.prekey_id, message.total_chunks,
                                message.data_chunks, message.manifest_owner, claimed))
    return sent


async def _send_one(net, profile, keys, rid, plaintext, prekey_id, recipient_key, now):
    msg_id = new_msg_id()
    ttl = profile.message_ttl
    header = DMPHeader(msg_id, keys.user_id, rid, int(now), ttl)
    outer = encode_outer(header, sealing.seal(plaintext, recipient_key, aad(header, prekey_id)))
    k, n = codec.plan(len(outer))
    blobs = codec.encode(outer)
    msg_key = owners.message_key(msg_id, rid, keys.ed25519_public)
    await all_of(net.writer.publish(owners.chunk(i, msg_key, profile.zone), chunk.encode(blob),
                                    ttl)
                 for i, blob in enumerate(blobs))
    manifest = slot_manifest.sign(msg_id, keys.ed25519_public, rid, n, k, prekey_id, int(now),
                                  int(now) + ttl, codec.chunk_hashes(blobs), keys.signer)
    owner = owners.slot(owners.slot_for(msg_id), rid, profile.zone)
    await net.writer.publish(owner, manifest, ttl)
    return SentMessage(msg_id, prekey_id, n, k, owner)
