"""Rotation record, ``v=dmp1;t=rotation;`` (docs/wire-format.md §4.7).

"The holder of ``old_spk`` hands ``subject`` over to ``new_spk``": one body, signed twice,
first by the old key and then by the new one, so neither key alone can forge a hand-over.
The subject helpers here (types, validation, normalisation) are shared with revocations,
which name their subject the same way.

Body: ``DMPROT1 | subject_type u8 | subject_len u8 | subject | old_spk 32 | new_spk 32 |
seq u64 | ts u64 | exp u64``, then ``sig_old 64 | sig_new 64``.
"""

from dataclasses import dataclass

from . import b64, names, prefixes
from .binreader import Reader
from .signing import PUBLIC_KEY_LEN, Signer, decode_self_signed

SUBJECT_USER = 1  # a user identity, "user@host"
SUBJECT_CLUSTER = 2  # a cluster operator key, named by the cluster base domain
SUBJECT_BOOTSTRAP = 3  # a bootstrap (zone operator) signer, named by the user domain
SUBJECT_TYPES = (SUBJECT_USER, SUBJECT_CLUSTER, SUBJECT_BOOTSTRAP)

# A user subject may use the whole u8 length; DNS-name subjects share the 64-byte cap of
# cluster names and bootstrap domains (section 1.4).
MAX_USER_SUBJECT = 255
MAX_NAME_SUBJECT = 64
U64_LIMIT = 1 << 64
# Cluster, bootstrap and rotation records may not claim to live longer than 5 * 365 days.
MAX_LIFETIME = 5 * 365 * 86400

_MAGIC = prefixes.MAGIC_ROTATION


@dataclass(frozen=True)
class Rotation:
    subject_type: int
    subject: str
    old_spk: bytes
    new_spk: bytes
    seq: int
    ts: int
    exp: int


# -- subjects (shared with revocation) -------------------------------------------------------

def subject_problem(subject_type, subject) -> str | None:
    """Why ``subject`` is not a valid subject of ``subject_type``, or None if it is."""
    if subject_type not in SUBJECT_TYPES:
        return f"subject type must be one of {SUBJECT_TYPES}"
    if not isinstance(subject, str) or not subject:
        return "subject must be a non-empty string"
    if not _encodable(subject):
        return "subject must be valid Unicode text"
    cap = MAX_USER_SUBJECT if subject_type == SUBJECT_USER else MAX_NAME_SUBJECT
    if len(subject.encode("utf-8")) > cap:
        return f"subject longer than {cap} UTF-8 bytes"
    if subject_type == SUBJECT_USER:
        return _user_subject_problem(subject)
    if names.ldh_name(subject) is None:
        return "subject must be a DNS name"
    return None


def _user_subject_problem(subject: str) -> str | None:
    user, at, host = subject.partition("@")
    if not at or not user.strip() or not host.strip():
        return "a user subject is user@host"
    if names.ldh_name(host.strip()) is None:
        return "the host of a user subject must be a DNS name"
    return None


def normalize_subject(subject_type: int, subject: str) -> str:
    """The form two subjects are compared in: DNS names casefolded, one trailing dot dropped.

    A user subject keeps its user part as written (only trimmed): usernames are case
    sensitive, hosts are not.
    """
    if subject_type == SUBJECT_USER:
        user, at, host = subject.partition("@")
        if not at:
            return subject
        return f"{user.strip()}@{names.drop_root_dot(host.strip()).casefold()}"
    return names.drop_root_dot(subject).casefold()


def same_subject(subject_type: int, a: str, b: str) -> bool:
    return normalize_subject(subject_type, a) == normalize_subject(subject_type, b)


def _encodable(text: str) -> bool:
    # Lone surrogates are the only str content UTF-8 cannot encode.
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def encode_subject(subject_type: int, subject: str) -> bytes:
    """``subject_type u8 | subject_len u8 | subject``; ValueError for a bad subject."""
    problem = subject_problem(subject_type, subject)
    if problem:
        raise ValueError(problem)
    raw = subject.encode("utf-8")
    return bytes([subject_type, len(raw)]) + raw


def read_subject(reader: Reader) -> tuple[int, str] | None:
    """(subject_type, subject) read off ``reader``, or None if missing or invalid."""
    subject_type, subject = reader.u8(), reader.prefixed_text(1, "utf-8")
    if subject is None or subject_problem(subject_type, subject):
        return None
    return subject_type, subject


# -- the record --------------------------------------------------------------------------------

def sign(subject_type: int, subject: str, old_spk: bytes, new_spk: bytes, seq: int, ts: int,
         exp: int, old_signer: Signer, new_signer: Signer) -> str:
    """The rotation TXT string, co-signed by the outgoing and the incoming key.

    The subject is stored as written (it is only normalised for comparisons).
    """
    if bytes(old_spk) != old_signer.public_key or bytes(new_spk) != new_signer.public_key:
        raise ValueError("old_spk and new_spk must be the public keys of the two signers")
    if old_signer.public_key == new_signer.public_key:
        raise ValueError("old and new key must differ")
    for name, value in (("seq", seq), ("ts", ts), ("exp", exp)):
        if not isinstance(value, int) or not 0 <= value < U64_LIMIT:
            raise ValueError(f"{name} must be an unsigned 64-bit integer")
    body = (_MAGIC + encode_subject(subject_type, subject) + old_signer.public_key
            + new_signer.public_key + seq.to_bytes(8, "big") + ts.to_bytes(8, "big")
            + exp.to_bytes(8, "big"))
    return prefixes.ROTATION + b64.encode(body + old_signer.sign(body) + new_signer.sign(body))


def decode(wire) -> Rotation | None:
    """The rotation in ``wire`` if it is well formed and both signatures verify; no time rules."""
    return decode_self_signed(wire, prefixes.ROTATION, prefixes.MAX_SIGNED_WIRE, _parse_body,
                              lambda record: (record.old_spk, record.new_spk), count=2)


def _parse_body(body: bytes) -> Rotation | None:
    reader = Reader(body)
    if reader.take(len(_MAGIC)) != _MAGIC:
        return None
    subject = read_subject(reader)
    old_spk, new_spk = reader.take(PUBLIC_KEY_LEN), reader.take(PUBLIC_KEY_LEN)
    seq, ts, exp = reader.u64(), reader.u64(), reader.u64()
    if subject is None or not reader.done or old_spk == new_spk:
        return None
    return Rotation(*subject, old_spk, new_spk, seq, ts, exp)


def time_problem(record: Rotation, now: int) -> str | None:
    """The first time rule of section 1.5 that ``record`` breaks at ``now``, else None."""
    if record.exp < now:
        return "expired"
    if record.exp - now > MAX_LIFETIME:
        return "expiry more than 5 years ahead"
    return None


def parse_and_verify(wire, *, now: int, expected_old_spk: bytes | None = None,
                     expected_subject: str | None = None) -> Rotation | None:
    """``decode`` plus the time rules and the optional bindings; never raises.

    ``expected_subject`` is compared after normalisation for the record's subject type.
    """
    record = decode(wire)
    if record is None or time_problem(record, now):
        return None
    if expected_old_spk is not None and record.old_spk != expected_old_spk:
        return None
    if expected_subject is not None and not (
            isinstance(expected_subject, str)
            and same_subject(record.subject_type, record.subject, expected_subject)):
        return None
    return record
