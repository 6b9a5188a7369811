"""The identity record, ``v=dmp1;t=identity;d=`` (docs/wire-format.md §4.3).

Body: ``L u8 (1..64) || username (L bytes UTF-8) || x25519_pk 32 || ed25519_spk 32 || ts u64``
and an optional versions suffix ``V u8 (>= 1) || V version bytes, strictly ascending``; then
an Ed25519 signature by ``ed25519_spk`` (the record authenticates itself). A record without
the suffix advertises versions [1]; writers omit the suffix for exactly {1} so a v1-only
record is bit-identical to the historical format. Identities carry no time rule: ``ts`` is
informational.
"""

import struct
from dataclasses import dataclass

from . import b64, prefixes
from .signing import PUBLIC_KEY_LEN, Signer, split_signatures, verify

MAX_USERNAME = 64
MAX_U64 = 2**64 - 1
DEFAULT_VERSIONS = (1,)
_KEYS_AND_TS = struct.Struct(">32s32sQ")
# Smallest body: a 1-byte username with the fixed part.
MIN_BODY = 1 + 1 + _KEYS_AND_TS.size  # 74


@dataclass(frozen=True)
class Identity:
    username: str
    x25519_pk: bytes
    ed25519_spk: bytes
    ts: int
    versions: tuple[int, ...] = DEFAULT_VERSIONS


def normalize_versions(versions) -> tuple[int, ...]:
    """Sorted, de-duplicated protocol versions (each 0..255); raises ValueError otherwise."""
    values = list(versions)
    if not values:
        raise ValueError("an identity advertises at least one protocol version")
    if any(not isinstance(v, int) or not 0 <= v <= 255 for v in values):
        raise ValueError("protocol versions are integers 0..255")
    return tuple(sorted(set(values)))


def sign(username: str, x25519_pk: bytes, ed25519_spk: bytes, ts: int, signer: Signer, *,
         versions=DEFAULT_VERSIONS) -> str:
    """The TXT string of an identity signed by ``signer`` (whose key must be ``ed25519_spk``)."""
    name = username.encode("utf-8")
    if not 1 <= len(name) <= MAX_USERNAME:
        raise ValueError("username is 1..64 bytes of UTF-8")
    if len(x25519_pk) != PUBLIC_KEY_LEN or len(ed25519_spk) != PUBLIC_KEY_LEN:
        raise ValueError("x25519_pk and ed25519_spk are 32 bytes")
    if not 0 <= ts <= MAX_U64:
        raise ValueError("ts is a u64")
    if bytes(ed25519_spk) != signer.public_key:
        raise ValueError("ed25519_spk is not the signer's public key")
    normalized = normalize_versions(versions)
    body = bytes([len(name)]) + name + _KEYS_AND_TS.pack(bytes(x25519_pk), bytes(ed25519_spk), ts)
    if normalized != DEFAULT_VERSIONS:
        body += bytes([len(normalized)]) + bytes(normalized)
    return prefixes.IDENTITY + b64.encode(body + signer.sign(body))


def decode(wire) -> Identity | None:
    """Prefix, base64, layout and the self-signature; never raises."""
    blob = b64.decode_after_prefix(wire, prefixes.IDENTITY)
    if blob is None:
        return None
    split = split_signatures(blob)
    if split is None:
        return None
    body, (signature,) = split
    if len(body) < MIN_BODY:
        return None
    name_len = body[0]
    fixed_end = 1 + name_len + _KEYS_AND_TS.size
    if not 1 <= name_len <= MAX_USERNAME or len(body) < fixed_end:
        return None
    versions = _versions(body[fixed_end:])
    username = _utf8(body[1:1 + name_len])
    if versions is None or username is None:
        return None
    x25519_pk, spk, ts = _KEYS_AND_TS.unpack_from(body, 1 + name_len)
    if not verify(spk, signature, body):
        return None
    return Identity(username, x25519_pk, spk, ts, versions)


def _versions(suffix: bytes) -> tuple[int, ...] | None:
    """The advertised versions from the optional suffix, or None if it is malformed."""
    if not suffix:
        return DEFAULT_VERSIONS
    count, values = suffix[0], suffix[1:]
    if count == 0 or len(values) != count:
        return None
    if any(a >= b for a, b in zip(values, values[1:])):
        return None
    return tuple(values)


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def time_problem(record: Identity, now: int) -> str | None:
    """Identities have no time rule (section 1.5)."""
    return None


def parse_and_verify(wire, *, now: int, expected_username: str | None = None,
                     expected_spk: bytes | None = None) -> Identity | None:
    """``decode`` plus optional bindings: the exact username (the zone-anchored form
    requires it before pinning) and a pinned Ed25519 key."""
    record = decode(wire)
    if record is None:
        return None
    if expected_username is not None and record.username != expected_username:
        return None
    if expected_spk is not None and record.ed25519_spk != bytes(expected_spk):
        return None
    return record
