"""The RRSIGs stored beside a name's pre-packed TXT answer: the one module that makes, packs
and reads them (RFC 4034 section 3; the blob itself: ``rrblob``).

A stored TXT RRset changes its live members without any write: each value expires on its
own. The live members at a time ``t`` are the blob's entries with expiry after ``t``, so
as time goes on they shrink along one chain (all entries, then all but the soonest to
expire, ...), and a live set is told apart by its size alone. So a record is signed for the
first ``MAX_STEPS`` sets of that chain at write time, each under its member count, and the
fast path picks the one whose count equals the number of live entries it read. A sweep
only drops entries that are no longer live, so it leaves every step right; any other change
of the blob re-signs the record in the same transaction (``store.batch``).

A record, all integers big-endian::

    profile | u32 inception | u32 expiration | u8 steps | steps x (u16 count | u16 size |
    RRSIG tails)

where ``profile`` is ``u8 FORMAT | u32 original TTL | u8 keys | keys x u16 key tag`` (what
must match the signer now, or the record is stale) and an RRSIG tail is ``u16 rdlength |
rdata`` as on the wire after the TTL, one per signing key, so the fast path splices them
after ``c00c 002e 0001 TTL`` as it does the TXT tails.
"""

import struct

from . import dnssec, rrblob

FORMAT = 1
MAX_STEPS = 4            # live sets signed ahead at each write (4 x keys signatures at most)
TXT = 16
_WINDOW = struct.Struct(">II")
_STEP = struct.Struct(">HH")


def profile(keys, ttl: int) -> bytes:
    """What a stored record must have been signed with to be served: the format, the
    Original TTL and the tags of the keys signing data (RFC 4034 section 3.1.6)."""
    tags = b"".join(struct.pack(">H", key.tag) for key in keys)
    return struct.pack(">BIB", FORMAT, ttl, len(keys)) + tags


def build(keys, apex, owner, ttl: int, blob: bytes, now_ms: int,
          window: tuple[int, int]) -> bytes | None:
    """The record for ``owner`` (wire labels) over ``blob`` as it is live at ``now_ms``,
    signed by ``keys`` for ``window`` (inception, expiration); None when nothing is live."""
    live = sorted(rrblob.live(blob, now_ms), key=lambda entry: entry[0])
    if not live or not keys:
        return None
    inception, expiration = window
    owner = tuple(label.lower() for label in owner)
    heads = [dnssec.rrsig_head(TXT, owner, ttl, inception, expiration, key, apex)
             for key in keys]
    out = [profile(keys, ttl), _WINDOW.pack(inception % 2**32, expiration % 2**32)]
    steps, start = [], 0
    while start < len(live) and len(steps) < MAX_STEPS:
        members = [bytes(rdata) for _, rdata in live[start:]]
        rrset = dnssec.canonical_rrset(owner, TXT, ttl, members)
        tails = b"".join(_tail(head + key.sign(head + rrset))
                         for head, key in zip(heads, keys))
        steps.append(_STEP.pack(len(members), len(tails)) + tails)
        expiry = live[start][0]
        while start < len(live) and live[start][0] == expiry:    # ties leave together
            start += 1
    out.append(bytes((len(steps),)))
    return b"".join(out + steps)


def steps(record) -> int:
    """How many live sets ``record`` signs."""
    return record[record[5] * 2 + 6 + _WINDOW.size]


def _tail(rdata: bytes) -> bytes:
    return len(rdata).to_bytes(2, "big") + rdata


def lookup(record, expected: bytes, count: int, now_ms: int, ttl: int, fresh_for: int):
    """``(RRSIG tails, until_ms)`` for a live set of ``count`` entries at ``now_ms`` when
    ``record`` was made with ``expected`` (a ``profile``), is within its window with room
    for the answer's TTL (``ttl`` seconds, RFC 4035 section 5.3.3) and has that step; else
    None. ``until_ms`` is how long an answer with these RRSIGs may be kept (answer cache):
    while the window allows, and no longer than ``fresh_for`` seconds after the inception
    (the backdating plus a refresh period), by when the re-signer has stored newer ones."""
    if record is None or record[:len(expected)] != expected:
        return None
    at = len(expected)
    inception, expiration = _WINDOW.unpack_from(record, at)
    usable_ms = (expiration - ttl) * 1000 - 1
    if not inception * 1000 <= now_ms <= usable_ms:
        return None
    at += _WINDOW.size
    steps, at = record[at], at + 1
    for _ in range(steps):
        members, size = _STEP.unpack_from(record, at)
        at += _STEP.size
        if members == count:
            until_ms = min(usable_ms, (inception + fresh_for) * 1000 - 1)
            return _split_tails(record[at:at + size]), until_ms
        at += size
    return None


def _split_tails(tails) -> list:
    out, at = [], 0
    while at < len(tails):
        size = 2 + ((tails[at] << 8) | tails[at + 1])
        out.append(tails[at:at + size])
        at += size
    return out


def stale(record, expected: bytes, blob, now_ms: int, inception_now: int) -> bool:
    """Whether the re-signer should sign the name again: no record for a live blob, a
    record made with other keys or TTL, from an earlier window than ``inception_now`` (the
    window moves every refresh period), or whose steps do not reach past the next
    expiry of the live set (so a value expiring leaves it unsigned)."""
    if blob is None or rrblob.live_until(blob, now_ms) is None:
        return False
    if record is None or record[:len(expected)] != expected:
        return True
    inception = _WINDOW.unpack_from(record, len(expected))[0]
    if inception < inception_now % 2**32:
        return True
    live = sorted(expiry for expiry, _ in rrblob.live(blob, now_ms))
    at = len(expected) + _WINDOW.size
    steps, at, counts = record[at], at + 1, set()
    for _ in range(steps):
        members, size = _STEP.unpack_from(record, at)
        counts.add(members)
        at += _STEP.size + size
    left = [len(live) - index for index, expiry in enumerate(live)
            if index == 0 or live[index - 1] != expiry]
    return not all(count in counts for count in left[:2])
