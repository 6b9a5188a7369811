"""Claim record, ``v=dmp1;t=claim;`` (docs/wire-format.md §4.10).

A sender publishes a claim at ``claim-{slot}.mb-{hex12(H(recipient_id))}.<zone>`` (a claim
provider's zone, or the recipient's) to say "I left a message for you in slot N of my
mailbox zone", so a recipient can find mail from senders it has not pinned. The recipient
is named only by the owner name; the body names the sender's mailbox zone.

Body: ``DMPCL01 | msg_id 16 | sender_spk 32 | domain_len u8 | sender_mailbox_domain | slot u8 |
ts u64 | exp u64``, then one 64-byte signature by ``sender_spk``. The magic is the cluster
manifest's: only the prefix tells the two apart. The whole value must fit one TXT
character-string (255 bytes), which caps the domain at 43 bytes.
"""

from dataclasses import dataclass

from . import b64, prefixes
from .binreader import Reader
from .owners import SLOT_COUNT
from .signing import PUBLIC_KEY_LEN, Signer, decode_self_signed

MSG_ID_LEN = 16
MAX_DOMAIN = 43  # bytes: 15 + 4 * ceil((137 + 43) / 3) = 255
I63_LIMIT = 1 << 63  # the reference keeps ts and exp within a signed 64-bit integer
MAX_FUTURE_SKEW = 300  # ts may lie at most this far ahead; a past ts is fine, exp rules
MAX_LIFETIME = 30 * 86400

_MAGIC = prefixes.MAGIC_CLAIM


@dataclass(frozen=True)
class Claim:
    msg_id: bytes
    sender_spk: bytes
    sender_mailbox_domain: str
    slot: int
    ts: int
    exp: int


def domain_problem(domain) -> str | None:
    """Why ``domain`` cannot be a claim's sender mailbox domain, or None.

    It ends up in the names the recipient queries, so whitespace and control characters
    (which could smuggle extra labels or lines into them) are refused.
    """
    if not isinstance(domain, str) or not domain:
        return "sender mailbox domain must be a non-empty string"
    if any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F or c.isspace()
           or 0xD800 <= ord(c) <= 0xDFFF for c in domain):
        return "sender mailbox domain contains whitespace or control characters"
    if len(domain.encode("utf-8")) > MAX_DOMAIN:
        return f"sender mailbox domain is longer than {MAX_DOMAIN} UTF-8 bytes"
    return None


def _field_problem(msg_id, domain, slot, ts, exp) -> str | None:
    """The sign-side rules, which the parser applies too."""
    if not isinstance(msg_id, (bytes, bytearray)) or len(msg_id) != MSG_ID_LEN:
        return f"msg_id must be {MSG_ID_LEN} bytes"
    problem = domain_problem(domain)
    if problem:
        return problem
    if not isinstance(slot, int) or not 0 <= slot < SLOT_COUNT:
        return f"slot must be 0..{SLOT_COUNT - 1}"
    for name, value in (("ts", ts), ("exp", exp)):
        if not isinstance(value, int) or not 0 <= value < I63_LIMIT:
            return f"{name} must be 0..2^63-1"
    if exp <= ts:
        return "exp must be after ts"
    return None


def sign(msg_id: bytes, sender_spk: bytes, sender_mailbox_domain: str, slot: int, ts: int,
         exp: int, signer: Signer) -> str:
    """The claim TXT string, signed by the sender's identity key ``sender_spk``."""
    if bytes(sender_spk) != signer.public_key:
        raise ValueError("sender_spk is not the signer's public key")
    problem = _field_problem(msg_id, sender_mailbox_domain, slot, ts, exp)
    if problem:
        raise ValueError(problem)
    domain = sender_mailbox_domain.encode("utf-8")
    body = (_MAGIC + bytes(msg_id) + signer.public_key + bytes([len(domain)]) + domain
            + bytes([slot]) + ts.to_bytes(8, "big") + exp.to_bytes(8, "big"))
    # A domain of at most 43 bytes keeps the wire within MAX_CLAIM_WIRE (255).
    return prefixes.CLAIM + b64.encode(body + signer.sign(body))


def decode(wire) -> Claim | None:
    """The claim in ``wire`` if well formed and signed by its sender; no time rules."""
    return decode_self_signed(wire, prefixes.CLAIM, prefixes.MAX_CLAIM_WIRE, _parse_body,
                              lambda record: (record.sender_spk,))


def _parse_body(body: bytes) -> Claim | None:
    reader = Reader(body)
    if reader.take(len(_MAGIC)) != _MAGIC:
        return None
    msg_id, sender_spk = reader.take(MSG_ID_LEN), reader.take(PUBLIC_KEY_LEN)
    domain = reader.prefixed_text(1, "utf-8")
    slot, ts, exp = reader.u8(), reader.u64(), reader.u64()
    if not reader.done:
        return None
    record = Claim(msg_id, sender_spk, domain, slot, ts, exp)
    if _field_problem(record.msg_id, record.sender_mailbox_domain, record.slot, record.ts,
                      record.exp):
        return None
    return record


def time_problem(record: Claim, now: int) -> str | None:
    """The first time rule of section 1.5 that ``record`` breaks at ``now``, else None."""
    if record.ts - now > MAX_FUTURE_SKEW:
        return "timestamp more than 5 minutes ahead"
    if record.exp <= now:
        return "expired"
    if record.exp - now > MAX_LIFETIME:
        return "expiry more than 30 days ahead"
    if record.exp <= record.ts:
        return "expiry not after timestamp"
    return None


def parse_and_verify(wire, *, now: int) -> Claim | None:
    """``decode`` plus the time rules; never raises."""
    record = decode(wire)
    if record is None or time_problem(record, now):
        return None
    return record
