"""Bootstrap record, ``v=dmp1;t=bootstrap;`` (docs/wire-format.md §4.6).

Published at ``_dmp.<user_domain>`` by the domain's zone operator, it points at 1..16
clusters (like MX records: lower priority first), each with the operator key that signs
that cluster's manifest. The zone operator's key is pinned by the caller; the parser checks
the signature with it *before* looking at any field, so unsigned bytes are never
interpreted.

Body: ``DMPBS01 | seq u64 | exp u64 | signer_spk 32 | user_domain_len u8 | user_domain |
entry_count u8 | entries``, each entry ``priority u16 | base_len u8 | base | operator_spk 32``;
then one 64-byte signature.
"""

from dataclasses import dataclass

from . import b64, names, prefixes
from .binreader import Reader
from .signing import PUBLIC_KEY_LEN, Signer, split_signed_value, verify

MAX_ENTRIES = 16
MAX_NAME = 64  # bytes, for the user domain and every cluster base domain (without a final dot)
MAX_PRIORITY = 0xFFFF
U64_LIMIT = 1 << 64
# Cluster, bootstrap and rotation records may not claim to live longer than 5 * 365 days.
MAX_LIFETIME = 5 * 365 * 86400

_MAGIC = prefixes.MAGIC_BOOTSTRAP
_SIGNER_AT = len(_MAGIC) + 16
_HEADER = _SIGNER_AT + PUBLIC_KEY_LEN


@dataclass(frozen=True)
class BootstrapEntry:
    priority: int
    cluster_base_domain: str
    operator_spk: bytes


@dataclass(frozen=True)
class Bootstrap:
    seq: int
    exp: int
    signer_spk: bytes
    user_domain: str
    entries: tuple[BootstrapEntry, ...]  # ascending priority, ties in publication order

    @property
    def best_entry(self) -> BootstrapEntry:
        return self.entries[0]


# -- signing -----------------------------------------------------------------------------------

def sign(seq: int, exp: int, signer_spk: bytes, user_domain: str, entries,
         signer: Signer) -> str:
    """The bootstrap TXT string; ``entries`` is a sequence of ``BootstrapEntry``.

    ``signer_spk`` must be the zone operator ``signer``'s key. Names lose one trailing dot;
    entries are stably sorted by priority, as the reference does, so the same inputs always
    give the same bytes.
    """
    if bytes(signer_spk) != signer.public_key:
        raise ValueError("signer_spk is not the signer's public key")
    for name, value in (("seq", seq), ("exp", exp)):
        if not isinstance(value, int) or not 0 <= value < U64_LIMIT:
            raise ValueError(f"{name} must be an unsigned 64-bit integer")
    domain = _checked_name(user_domain, "user domain")
    ordered = _checked_entries(entries)
    body = (_MAGIC + seq.to_bytes(8, "big") + exp.to_bytes(8, "big") + signer.public_key
            + _length_prefixed(domain) + bytes([len(ordered)])
            + b"".join(_encode_entry(entry) for entry in ordered))
    wire = prefixes.BOOTSTRAP + b64.encode(body + signer.sign(body))
    if len(wire) > prefixes.MAX_SIGNED_WIRE:
        raise ValueError(f"bootstrap record is {len(wire)} characters, over the "
                         f"{prefixes.MAX_SIGNED_WIRE} limit: use fewer or shorter entries")
    return wire


def _checked_name(name, what: str) -> str:
    normalized = names.ldh_name(name)
    if normalized is None:
        raise ValueError(f"{what} {name!r} is not a DNS name")
    if len(normalized) > MAX_NAME:
        raise ValueError(f"{what} is longer than {MAX_NAME} bytes")
    return normalized


def _checked_entries(entries) -> list[BootstrapEntry]:
    entries = list(entries)
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise ValueError(f"a bootstrap record holds 1..{MAX_ENTRIES} entries")
    checked = []
    for entry in entries:
        if not isinstance(entry.priority, int) or not 0 <= entry.priority <= MAX_PRIORITY:
            raise ValueError("priority must be 0..65535")
        key = entry.operator_spk
        if not isinstance(key, (bytes, bytearray)) or len(key) != PUBLIC_KEY_LEN:
            raise ValueError("operator_spk must be 32 bytes")
        base = _checked_name(entry.cluster_base_domain, "cluster base domain")
        checked.append(BootstrapEntry(entry.priority, base, bytes(key)))
    if _has_duplicates(checked):
        raise ValueError("duplicate (priority, cluster base domain) entry")
    return sorted(checked, key=lambda entry: entry.priority)


def _has_duplicates(entries) -> bool:
    keys = {(entry.priority, entry.cluster_base_domain.casefold()) for entry in entries}
    return len(keys) != len(entries)


def _length_prefixed(name: str) -> bytes:
    raw = name.encode("ascii")
    return bytes([len(raw)]) + raw


def _encode_entry(entry: BootstrapEntry) -> bytes:
    return (entry.priority.to_bytes(2, "big") + _length_prefixed(entry.cluster_base_domain)
            + entry.operator_spk)


# -- parsing -----------------------------------------------------------------------------------

def decode(wire, signer_key: bytes | None = None) -> Bootstrap | None:
    """The bootstrap record in ``wire`` if well formed and signed by ``signer_key``.

    ``signer_key`` is the pinned zone operator key; None verifies against the key the record
    carries (for inspection only: that proves integrity, not authority). No time rules.
    """
    parts = split_signed_value(wire, prefixes.BOOTSTRAP, prefixes.MAX_SIGNED_WIRE)
    if parts is None:
        return None
    body, (signature,) = parts
    key = body[_SIGNER_AT:_HEADER] if signer_key is None else signer_key
    if not verify(key, signature, body):
        return None
    record = _parse_body(body)
    if record is None or record.signer_spk != key:
        return None
    return record


def _parse_body(body: bytes) -> Bootstrap | None:
    reader = Reader(body)
    if reader.take(len(_MAGIC)) != _MAGIC:
        return None
    seq, exp, signer_spk = reader.u64(), reader.u64(), reader.take(PUBLIC_KEY_LEN)
    user_domain = _read_name(reader)
    count = reader.u8()
    if user_domain is None or count is None or not 1 <= count <= MAX_ENTRIES:
        return None
    entries = []
    for _ in range(count):
        entry = _read_entry(reader)
        if entry is None:
            return None
        entries.append(entry)
    if not reader.done or _has_duplicates(entries):
        return None
    entries.sort(key=lambda entry: entry.priority)
    return Bootstrap(seq, exp, signer_spk, user_domain, tuple(entries))


def _read_name(reader: Reader) -> str | None:
    """A length-prefixed DNS name (one trailing dot allowed, then dropped)."""
    text = reader.prefixed_text(1, "ascii")
    name = None if text is None else names.ldh_name(text)
    if name is None or len(name) > MAX_NAME:
        return None
    return name


def _read_entry(reader: Reader) -> BootstrapEntry | None:
    priority = reader.u16()
    name = _read_name(reader)
    operator_spk = reader.take(PUBLIC_KEY_LEN)
    if name is None or operator_spk is None:
        return None
    return BootstrapEntry(priority, name, operator_spk)


# -- policy ------------------------------------------------------------------------------------

def time_problem(record: Bootstrap, now: int) -> str | None:
    """The first time rule of section 1.5 that ``record`` breaks at ``now``, else None."""
    if record.exp < now:
        return "expired"
    if record.exp - now > MAX_LIFETIME:
        return "expiry more than 5 years ahead"
    return None


def parse_and_verify(wire, signer_key: bytes | None, *, now: int,
                     expected_user_domain: str | None = None) -> Bootstrap | None:
    """``decode`` against the pinned ``signer_key``, the time rules and the optional binding.

    ``expected_user_domain`` (the domain whose ``_dmp.`` name was queried) must equal the
    signed user domain, case-insensitively and ignoring one trailing dot. Never raises.
    """
    record = decode(wire, signer_key)
    if record is None or time_problem(record, now):
        return None
    if expected_user_domain is not None and not (
            isinstance(expected_user_domain, str)
            and names.same_name(record.user_domain, expected_user_domain)):
        return None
    return record
