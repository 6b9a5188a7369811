"""Revocation record, ``v=dmp1;t=revocation;`` (docs/wire-format.md §4.8).

"The key ``revoked_spk`` is no longer valid for ``subject``", signed by that key itself, so
anyone holding a key can retire it. Revocations are permanent by default: only a caller that
opts in with ``max_age`` drops old ones. Subjects are named as in rotations and live in the
same ``rotate.`` RRset.

Body: ``DMPRV01 | subject_type u8 | subject_len u8 | subject | revoked_spk 32 | reason u8 |
ts u64``, then one 64-byte signature by ``revoked_spk``.
"""

from dataclasses import dataclass

from . import b64, prefixes
from .binreader import Reader
from .rotation import U64_LIMIT, encode_subject, read_subject, same_subject
from .signing import PUBLIC_KEY_LEN, Signer, decode_self_signed

REASON_COMPROMISE = 1
REASON_ROUTINE = 2
REASON_LOST_KEY = 3
REASON_OTHER = 4
REASON_CODES = (REASON_COMPROMISE, REASON_ROUTINE, REASON_LOST_KEY, REASON_OTHER)

# A revocation dated further than this into the future is refused (clock skew allowance).
MAX_FUTURE_SKEW = 300

_MAGIC = prefixes.MAGIC_REVOCATION


@dataclass(frozen=True)
class Revocation:
    subject_type: int
    subject: str
    revoked_spk: bytes
    reason_code: int
    ts: int


def sign(subject_type: int, subject: str, revoked_spk: bytes, reason_code: int, ts: int,
         signer: Signer) -> str:
    """The revocation TXT string: ``signer`` retires its own key ``revoked_spk``."""
    if bytes(revoked_spk) != signer.public_key:
        raise ValueError("a key can only be revoked by itself: revoked_spk is not the signer's")
    if reason_code not in REASON_CODES:
        raise ValueError(f"reason code must be one of {REASON_CODES}")
    if not isinstance(ts, int) or not 0 <= ts < U64_LIMIT:
        raise ValueError("ts must be an unsigned 64-bit integer")
    body = (_MAGIC + encode_subject(subject_type, subject) + signer.public_key
            + bytes([reason_code]) + ts.to_bytes(8, "big"))
    return prefixes.REVOCATION + b64.encode(body + signer.sign(body))


def decode(wire) -> Revocation | None:
    """The revocation in ``wire`` if it is well formed and self-signed; no time rules."""
    return decode_self_signed(wire, prefixes.REVOCATION, prefixes.MAX_SIGNED_WIRE,
                              _parse_body, lambda record: (record.revoked_spk,))


def _parse_body(body: bytes) -> Revocation | None:
    reader = Reader(body)
    if reader.take(len(_MAGIC)) != _MAGIC:
        return None
    subject = read_subject(reader)
    revoked_spk, reason_code, ts = reader.take(PUBLIC_KEY_LEN), reader.u8(), reader.u64()
    if subject is None or not reader.done or reason_code not in REASON_CODES:
        return None
    return Revocation(*subject, revoked_spk, reason_code, ts)


def time_problem(record: Revocation, now: int, max_age: int | None = None) -> str | None:
    """The first time rule ``record`` breaks at ``now``, else None.

    ``max_age`` (seconds) is the caller's optional cap; without it a revocation never ages.
    """
    if record.ts > now + MAX_FUTURE_SKEW:
        return "timestamp more than 5 minutes ahead"
    if max_age is not None and record.ts + max_age < now:
        return "older than the maximum age"
    return None


def parse_and_verify(wire, *, now: int, expected_revoked_spk: bytes | None = None,
                     expected_subject: str | None = None,
                     max_age: int | None = None) -> Revocation | None:
    """``decode`` plus the time rules and the optional bindings; never raises."""
    record = decode(wire)
    if record is None or time_problem(record, now, max_age):
        return None
    if expected_revoked_spk is not None and record.revoked_spk != expected_revoked_spk:
        return None
    if expected_subject is not None and not (
            isinstance(expected_subject, str)
            and same_subject(record.subject_type, record.subject, expected_subject)):
        return None
    return record
