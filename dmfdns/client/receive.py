"""Receiving messages: the slot walk of docs/wire-format.md §9.2 (phase 2) and reassembly (6.1).

One ``receive`` call:

1. forgets what has aged out (replay entries past their expiry, stale partial groups, retired
   keys kept past ``RETIRED_KEY_KEEP``) and, unless told not to, follows each contact's
   rotation chain (section 10): a revoked key is refused from then on, a rotated pin moves;
2. reads ``slot-0..9.mb-{hex12(H(our user_id))}`` in every contact's zone and in our own (and
   for each key a rotation retired), all at once, then the slots our claims point to in
   other zones (``claims``: first contact from senders we do not know);
3. per manifest that verifies, names us, has chunk hashes and has not expired: skips what
   the replay cache has seen and what blocked or revoked keys sent; a key pinned for that
   zone (any pinned key in our own zone) goes to the inbox, any other to the intro queue;
4. fetches chunks, k at a time, until k of them match the manifest's hashes (a chunk that
   does not match counts as lost, whatever it says), decodes, checks the outer header against
   the manifest and the inner freshness (``now > ts + ttl`` is stale), opens the payload with
   the prekey the manifest names (dropped if we do not hold it) or our identity key, and only
   then burns that prekey;
5. takes the DMPv2 ``from`` as the sender only after an identity at that address carrying the
   manifest's key is found (a pinned contact's, or one fetched); joins multi-part texts
   (``parts``); records (sender key, msg_id) in the replay cache.

A message that fails a step is not recorded, so a later poll tries again (chunks may arrive
late) until its manifest expires.
"""

from dataclasses import dataclass, field

from twisted.internet import defer

from ..proto import chunk, codec, envelope, names, owners, sealing, slot_manifest
from ..proto.keys import x25519_public
from ..proto.message import aad, decode_outer
from ..proto.signing import sha256
from . import claims, identity_ops, parts, prekeys, rotation
from .resolver import ReadError
from .state import IntroMessage, Profile, ReplayEntry

RETIRED_KEY_KEEP = 30 * 86400
PARTIAL_KEEP = 86400


@dataclass
class Message:
    msg_id: bytes
    sender_spk: bytes
    body: bytes
    ts: int
    zone: str
    prekey_id: int = 0
    contact: str | None = None     # the pinned contact it came from (None: intro)
    sender: str | None = None      # the DMPv2 sender, only when verified
    parts: int = 1


@dataclass
class ReceiveReport:
    delivered: list = field(default_factory=list)    # of Message, from pinned contacts
    intro: list = field(default_factory=list)        # of Message, from unpinned senders
    notes: list = field(default_factory=list)        # one-line remarks for the user
    dropped: dict = field(default_factory=dict)      # reason -> count

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


@dataclass(frozen=True)
class _Mailbox:
    recipient_id: bytes
    private: bytes


def forget_aged(state, now: int) -> None:
    state.replay = [r for r in state.replay if not now > r.exp]
    state.partials = {k: v for k, v in state.partials.items() if not now > v["exp"]}
    state.spent_prekeys = {k: exp for k, exp in state.spent_prekeys.items() if not now > exp}
    state.retired_keys = [k for k in state.retired_keys
                          if not now > k.retired + RETIRED_KEY_KEEP]


def mailboxes(state) -> list[_Mailbox]:
    keys = [state.x25519_private] + [k.x25519_private for k in state.retired_keys]
    return [_Mailbox(sha256(x25519_public(private)), private) for private in keys]


def zones_to_walk(profile: Profile, state) -> list[str]:
    zones = []
    for zone in [c.domain for c in state.contacts if not c.blocked] + [profile.zone]:
        zone = names.folded(zone)
        if zone not in zones:
            zones.append(zone)
    return zones


def classify(profile: Profile, state, sender_spk: bytes, zone: str):
    """("inbox", contact) | ("intro", None) | ("refused", reason) for a sender key."""
    if sender_spk in state.blocked_keys:
        return "refused", "blocked"
    matching = [c for c in state.contacts if c.ed25519 == sender_spk]
    if any(c.blocked for c in matching):
        return "refused", "blocked"
    if any(c.revoked for c in matching):
        return "refused", "revoked"
    own_zone = zone == names.folded(profile.zone)
    for contact in matching:
        if own_zone or contact.domain.lower() == zone:
            return "inbox", contact
    return "intro", None


async def receive(net, profile: Profile, state, now: int, *,
                  follow_rotations: bool = True) -> ReceiveReport:
    report = ReceiveReport()
    forget_aged(state, now)
    if follow_rotations:
        await _follow_contacts(net, state, now, report)
    seen = {(r.sender_spk, r.msg_id) for r in state.replay}
    walked = await _walk(net, profile, state, report)
    if profile.claims:
        walked += await claims.pointed_slots(net, profile, mailboxes(state), now,
                                             set(zones_to_walk(profile, state)), report)
    for zone, mailbox, values in walked:
        for value in values:
            await _consider(net, profile, state, now, zone, mailbox, value, seen, report)
    report.delivered.sort(key=lambda m: m.ts)
    report.intro.sort(key=lambda m: m.ts)
    return report


async def _follow_contacts(net, state, now, report) -> None:
    for contact in state.contacts:
        if contact.blocked or contact.revoked:
            continue
        try:
            result = await rotation.follow(net, contact, now)
        except ReadError as exc:
            report.notes.append(f"could not check {contact.address} for key rotation: {exc}")
            continue
        if result.status == rotation.REVOKED:
            report.notes.append(f"{contact.address} revoked its key; its messages are refused")
        elif result.status == rotation.ROTATED:
            report.notes.append(f"{contact.address} rotated its key; now "
                                f"{identity_ops.contact_fingerprint(contact)}")
        elif result.status == rotation.BROKEN:
            report.notes.append(f"{contact.address}: rotation chain ignored ({result.reason})")


async def _walk(net, profile, state, report):
    """[(zone, mailbox, values)] for every slot name, read concurrently."""
    targets, reads = [], []
    for zone in zones_to_walk(profile, state):
        for mailbox in mailboxes(state):
            for slot in range(owners.SLOT_COUNT):
                targets.append((zone, mailbox))
                reads.append(net.reader.read(owners.slot(slot, mailbox.recipient_id, zone)))
    results, failures = [], []
    for (zone, mailbox), outcome in zip(targets, await _settle(reads)):
        if isinstance(outcome, Exception):
            report.drop("read failed")
            failures.append(outcome)
            continue
        results.append((zone, mailbox, outcome))
    if failures and not results:
        raise failures[0]      # nothing could be read: an error, not "no new messages"
    return results


async def _settle(deferreds) -> list:
    """Each Deferred's result, or its exception, in order (never raises)."""
    outcomes = await defer.DeferredList(list(deferreds), consumeErrors=True)
    return [value if ok else value.value for ok, value in outcomes]


async def _consider(net, profile, state, now, zone, mailbox, value, seen, report) -> None:
    manifest = slot_manifest.parse_and_verify(value, now=now,
                                              expected_recipient_id=mailbox.recipient_id)
    if manifest is None or manifest.legacy or slot_manifest.is_expired(manifest, now):
        return
    key = (manifest.sender_spk, manifest.msg_id)
    if key in seen:
        return
    verdict, detail = classify(profile, state, manifest.sender_spk, zone)
    if verdict == "refused":
        report.drop(detail)
        return
    opened = await _open(net, profile, state, now, zone, mailbox, manifest, report)
    if opened is None:
        return
    seen.add(key)
    header_ts, header_ttl, body, fields = opened
    state.replay.append(ReplayEntry(manifest.sender_spk, manifest.msg_id,
                                    max(manifest.exp, header_ts + header_ttl)))
    sender = await _verified_sender(net, state, fields.get("from"), manifest.sender_spk, now)
    message = Message(manifest.msg_id, manifest.sender_spk, body, header_ts, zone,
                      manifest.prekey_id, detail.address if verdict == "inbox" else None,
                      sender)
    message = _join_parts(state, message, fields, now, report)
    if message is None:
        return
    if verdict == "inbox":
        report.delivered.append(message)
    else:
        report.intro.append(message)
        state.intro.append(IntroMessage(message.sender_spk, None, message.sender,
                                        message.msg_id, message.ts, zone, message.body))


async def _open(net, profile, state, now, zone, mailbox, manifest, report):
    """(ts, ttl, body, envelope header) of a manifest's message, or None (reason counted)."""
    shares = await fetch_shares(net, manifest, mailbox.recipient_id, zone)
    outer = codec.decode(manifest.data_chunks, manifest.total_chunks, shares,
                         list(manifest.chunk_hashes))
    if outer is None:
        report.drop("chunks missing")
        return None
    decoded = decode_outer(outer)
    if decoded is None:
        report.drop("bad outer message")
        return None
    header, payload = decoded
    if header.msg_id != manifest.msg_id or header.recipient != mailbox.recipient_id:
        report.drop("header does not match manifest")
        return None
    if now > header.ts + header.ttl:
        report.drop("stale")
        return None
    prekey = None
    private = mailbox.private
    if manifest.prekey_id:
        prekey = prekeys.private_for(state, manifest.prekey_id, now)
        if prekey is None:
            report.drop("unknown prekey")
            return None
        private = prekey.private
    plaintext = sealing.open_sealed(payload, private, aad(header, manifest.prekey_id))
    if plaintext is None:
        report.drop("does not decrypt")
        return None
    if prekey is not None:
        if not await prekeys.burn(net, profile, state, prekey):
            report.notes.append(f"prekey {prekey.prekey_id} forgotten, but deleting its "
                                "published value failed; it expires on its own")
    body, fields = envelope.unwrap_fields(plaintext)
    return header.ts, header.ttl, body, fields


async def fetch_shares(net, manifest, recipient_id: bytes, zone: str) -> dict[int, bytes]:
    """Chunk blobs by index, read k at a time until k match the manifest's hashes."""
    msg_key = owners.message_key(manifest.msg_id, recipient_id, manifest.sender_spk)
    held, next_index = {}, 0
    k, n = manifest.data_chunks, manifest.total_chunks
    while len(held) < k and next_index < n:
        batch = list(range(next_index, min(n, next_index + k - len(held))))
        next_index = batch[-1] + 1
        reads = [net.reader.read(owners.chunk(i, msg_key, zone)) for i in batch]
        for index, values in zip(batch, await _settle(reads)):
            if isinstance(values, Exception):
                continue
            blob = _matching_blob(values, manifest.chunk_hashes[index])
            if blob is not None:
                held[index] = blob
    return held


def _matching_blob(values, expected_hash: bytes) -> bytes | None:
    for value in values:
        blob = chunk.read_blob(value)
        if blob is not None and chunk.chunk_hash(blob) == expected_hash:
            return blob
    return None


async def _verified_sender(net, state, claimed, sender_spk: bytes, now: int) -> str | None:
    address = envelope.canonical_address(claimed) if isinstance(claimed, str) else None
    if address is None:
        return None
    contact = state.contact(address)
    if contact is not None and contact.ed25519 == sender_spk:
        return address
    try:
        found = await identity_ops.find_identity(net, address, now, expected_spk=sender_spk)
    except (ReadError, identity_ops.IdentityError):
        return None
    return address if found is not None else None


def _join_parts(state, message: Message, fields: dict, now: int, report) -> Message | None:
    """``message`` itself, the joined text once a multi-part group is complete, or None
    while parts are still missing."""
    info = parts.part_info(fields)
    if info is None:
        return message
    index, count, group = info
    key = f"{message.sender_spk.hex()}:{group}"
    entry = state.partials.setdefault(key, {"count": count, "parts": {}, "ts": message.ts,
                                            "exp": now + PARTIAL_KEEP})
    if entry["count"] != count:
        report.drop("inconsistent parts")
        return None
    entry["parts"][str(index)] = message.body.hex()
    entry["ts"] = min(entry["ts"], message.ts)
    if len(entry["parts"]) < count:
        report.notes.append(f"part {index + 1} of {count} of a long message received")
        return None
    del state.partials[key]
    body = b"".join(bytes.fromhex(entry["parts"][str(i)]) for i in range(count))
    message.body, message.ts, message.parts = body, entry["ts"], count
    return message
