"""First contact through claims (docs/wire-format.md §4.10, docs/dns-update.md, Claims).

A recipient walks the slots of its contacts' zones and its own; a stranger's message sits
in the stranger's zone, which it does not walk. So a sender also publishes a claim, a
signed pointer "a message for you waits in slot N of my zone", at
``claim-N.mb-<hex12(H(recipient_id))>.<recipient zone>``, as an unsigned DNS UPDATE to a
node serving that zone (the node checks the claim's signature and budgets claims). The
recipient polls its claim names and follows each verified claim to the sender's slot; the
message then goes where any unpinned sender's goes, the intro queue.

Claims are best effort, as in the reference: a failed claim never fails a send.
"""

from ..proto import claim, names, owners
from .dnsupdate import ADD, NOERROR, UpdateFailed
from .resolver import ReadError

MAX_CLAIM_TTL = 86400          # the reference node's DMP_CLAIM_MAX_TTL default
MAX_CLAIMS_PER_POLL = 64       # claims followed per receive (a flood cannot stall a poll)


async def publish(net, profile, keys, recipient_id: bytes, recipient_zone: str,
                  msg_id: bytes, slot: int, now: int, ttl: int) -> bool:
    """Publish the claim of one message; True once a node took it."""
    zone = names.folded(recipient_zone)
    if not profile.claims or not net.claim_servers or zone not in net.claim_zones:
        return False
    ttl = max(1, min(int(ttl), MAX_CLAIM_TTL))
    try:
        wire = claim.sign(msg_id, keys.ed25519_public, profile.zone, slot, int(now),
                          int(now) + ttl, keys.signer)
    except ValueError:          # a mailbox zone too long for a claim (43 bytes)
        return False
    owner = owners.claim(slot, recipient_id, zone)
    for server in net.claim_servers:
        try:
            if await net.updates.send(server, zone, [(ADD, owner, wire, ttl)]) == NOERROR:
                return True
        except UpdateFailed:
            continue
    return False


async def pointed_slots(net, profile, mailboxes, now: int, walked, report) -> list:
    """``[(sender zone, mailbox, slot values)]`` for the verified claims addressed to our
    mailboxes in our own zone, skipping zones the slot walk reads anyway."""
    targets = []
    for mailbox in mailboxes:
        for slot in range(owners.SLOT_COUNT):
            owner = owners.claim(slot, mailbox.recipient_id, profile.zone)
            try:
                values = await net.reader.read(owner)
            except ReadError:
                report.drop("claim read failed")
                continue
            for value in values or ():
                record = claim.parse_and_verify(value, now=now)
                if record is None:
                    report.drop("bad claim")
                    continue
                zone = names.folded(record.sender_mailbox_domain)
                target = (zone, mailbox, record.slot)
                if zone not in walked and target not in targets:
                    targets.append(target)
    found = []
    for zone, mailbox, slot in targets[:MAX_CLAIMS_PER_POLL]:
        try:
            values = await net.reader.read(owners.slot(slot, mailbox.recipient_id, zone))
        except ReadError:
            report.drop("read failed")
            continue
        found.append((zone, mailbox, values or ()))
    return found
