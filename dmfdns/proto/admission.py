"""Write admission: the one decision every write path makes before a value is stored.

HTTP writes, anti-entropy pulls and (later) DNS UPDATE all call ``admit``; it is pure
(``now`` and the store lookups are passed in) and never raises. The checks, in order:

1. resource caps, as the reference node applies them (docs/compatibility.md §2.1): TTL 1..86400,
   value at most 2048 bytes of UTF-8;
2. the owner name: canonical form (RFC 4343 lowercase, no trailing dot, a leading ``_``
   label allowed), inside a served zone;
3. RRset size: at most 64 values per name, and at most ``MAX_RRSET_WIRE`` bytes of answer
   section as served (re-writing a present value refreshes it). A DNS message carries at
   most 65,535 bytes (RFC 1035 section 4.2.2); 64 values of 2,048 bytes would need about
   132,000, so such a name could never be answered, not even over TCP. The cap leaves 5,535
   bytes for the header, the question (at most 259) and the OPT record with its options.
   A write past it is refused (``rrset_full``, HTTP 413, like the 65th value); the values
   already there keep being served until they expire or are deleted;
4. the value: printable ASCII without ``"`` (every v=dmp1 value is ASCII; ``"`` breaks zone
   file presentation, RFC 1035 section 5.1);
5. DMP semantics (docs/decisions.md §6.2): a value starting with ``v=dmp`` must be a
   known type that parses and verifies at ``now`` and sits at the owner name its type
   belongs to; non-DMP text is refused at DMP owner names (the reference's sync rule,
   docs/compatibility.md §3, applied to every path).

What binds a record to its owner name, and what cannot be checked:

* slot manifest at ``slot-N.mb-<hex12(H(recipient_id))>``: the mailbox hash is checked; N is
  not, because senders may pick any of the ten slots (readers poll all of them).
* chunk at ``chunk-NNNN-<hex12>``: only the shape and NNNN <= 1023; the hex12 is
  H(msg_id || recipient_id || sender_spk), and the chunk carries none of those.
* claim at ``claim-N.mb-<hex12>``: N must equal the claim's slot; the mailbox hash names the
  recipient, who is not in the claim.
* identity at ``id-<hex16(H(username))>``: the hash is checked. At ``dmp.<domain>`` the
  username is the local part of an address whose domain is ``<domain>``; nothing in the
  record names the domain, so only the label is checked.
* prekey at ``prekeys.id-<hex12>``: structure and time always; the signature only when the
  caller can find an identity whose name hash starts with the same 12 hex characters
  (``lookup_identities``), because a prekey does not say who signed it.
* cluster manifest only at this node's own ``cluster.<base>``, verified against the pinned
  operator key and bound to the base name; at any other ``cluster.`` name no key is known.
* bootstrap at ``_dmp.<user_domain>``: verified against its embedded signer key and bound to
  the user domain (authority over the domain is the reader's pinned key, not ours).
* rotation / revocation at ``rotate.``: operator subjects (cluster, bootstrap) must name the
  owner (``rotate.cluster.<subject>``, ``rotate._dmp.<subject>``); a user subject must sit at
  ``rotate.dmp.`` or ``rotate.id-<hex16>.`` (the hash input is not in the record).
* heartbeat at ``_dnsmesh-heartbeat.`` or ``_dnsmesh-seen.``, verified and within the
  heartbeat clock-skew rule.
"""

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from . import (bootstrap, chunk, claim, cluster_manifest, heartbeat, identity, names, owners,
               prefixes, prekey, revocation, rotation, slot_manifest, txt)

# Refusal reasons: a fixed set, so they can label a metric.
TTL = "ttl"
VALUE_SIZE = "value_size"
NAME = "name"
ZONE = "zone"
RRSET_FULL = "rrset_full"
VALUE = "value"
UNKNOWN_TYPE = "unknown_type"
NOT_DMP = "not_dmp"
OWNER = "owner"
INVALID_RECORD = "invalid_record"
TIME = "time"
NO_KEY = "no_key"
# Bytes of answer section one TXT RRset may take: per record a 2-byte compressed owner
# name, 10 bytes of type, class, TTL and RDLENGTH, and the RDATA (RFC 1035 section 4.1.3).
MAX_RRSET_WIRE = 60_000
RR_OVERHEAD = 12
REASONS = (TTL, VALUE_SIZE, NAME, ZONE, RRSET_FULL, VALUE, UNKNOWN_TYPE, NOT_DMP, OWNER,
           INVALID_RECORD, TIME, NO_KEY)

# Error texts shared with the reference node's HTTP API (docs/compatibility.md §2.1).
INVALID_NAME_TEXT = "invalid record name"
INVALID_VALUE_TEXT = "invalid record value"
TTL_TEXT = "value (str) and ttl (int > 0) required"


@dataclass(frozen=True)
class Limits:
    """The write caps; the defaults are the reference node's (DMP_MAX_*)."""

    max_ttl: int = 86400
    max_value_bytes: int = 2048
    max_values_per_name: int = 64
    max_rrset_wire: int = MAX_RRSET_WIRE


@dataclass(frozen=True)
class Admitted:
    """A write that may be stored: the canonical owner name, the value and its TTL."""

    name: str
    value: str
    ttl: int
    record_type: str | None  # the v=dmp1 prefix, or None for plain text


@dataclass(frozen=True)
class Refusal:
    """A refused write: ``reason`` is one of ``REASONS``, ``message`` is shown to clients."""

    reason: str
    message: str


# --- owner names ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Owner:
    """What a DMP owner name says. ``kind`` is None for names outside the DMP namespace;
    ``parts`` are the fields parsed from the DMP labels, ``parent`` the name below them."""

    kind: str | None
    parts: tuple = ()
    parent: str = ""


SLOT = "slot"
CHUNK = "chunk"
CLAIM = "claim"
IDENTITY_HASHED = "identity_hashed"
IDENTITY_ANCHORED = "identity_anchored"
PREKEYS = "prekeys"
CLUSTER = "cluster"
BOOTSTRAP = "bootstrap"
ROTATE = "rotate"
HEARTBEAT = "heartbeat"
SEEN = "seen"
DNSMESH_CLAIM = "dnsmesh_claim"
RESERVED = "reserved"  # in the DMP namespace, but no record type lives there

_HEX12 = "([0-9a-f]{12})"
_SHAPES = (
    (SLOT, re.compile(rf"slot-([0-9])\.mb-{_HEX12}\.(.+)")),
    (CLAIM, re.compile(rf"claim-([0-9])\.mb-{_HEX12}\.(.+)")),
    (CHUNK, re.compile(rf"chunk-([0-9]{{4}})-{_HEX12}\.(.+)")),
    (IDENTITY_HASHED, re.compile(r"id-([0-9a-f]{16})\.(.+)")),
    (PREKEYS, re.compile(rf"prekeys\.id-{_HEX12}\.(.+)")),
    (IDENTITY_ANCHORED, re.compile(r"dmp\.(.+)")),
    (CLUSTER, re.compile(r"cluster\.(.+)")),
    (BOOTSTRAP, re.compile(r"_dmp\.(.+)")),
    (ROTATE, re.compile(r"rotate\.(.+)")),
    (HEARTBEAT, re.compile(r"_dnsmesh-heartbeat\.(.+)")),
    (SEEN, re.compile(r"_dnsmesh-seen\.(.+)")),
    (DNSMESH_CLAIM, re.compile(r"_dnsmesh-claim-([0-9a-f]{16})\.(.+)")),
)
# First labels that put a name in the DMP namespace even when the rest is malformed
# (the reference's reserved patterns, docs/compatibility.md §3).
_RESERVED_FIRST_LABEL = re.compile(
    r"(slot-.*|chunk-.*|claim-.*|id-.*|mb-.*|_dnsmesh-.*|prekeys|cluster|_dmp|rotate|dmp)")


def classify(name: str, zone: str | None = None) -> Owner:
    """The DMP meaning of canonical ``name``; the zone apex itself is never a DMP owner."""
    if zone is not None and name == zone:
        return Owner(None)
    for kind, shape in _SHAPES:
        match = shape.fullmatch(name)
        if match:
            *parts, parent = match.groups()
            if kind == CHUNK and int(parts[0]) >= owners.MAX_CHUNKS:
                return Owner(RESERVED, (), parent)
            return Owner(kind, tuple(parts), parent)
    first, _, parent = name.partition(".")
    if parent and _RESERVED_FIRST_LABEL.fullmatch(first):
        return Owner(RESERVED, (), parent)
    return Owner(None)


def hex_hash(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


# --- the decision -----------------------------------------------------------------------------

def admit(name, value, ttl, *, zones: Sequence[str], now: float,
          lookup_values: Callable[[str], Sequence[str]], operator_key: bytes | None = None,
          cluster_base: str | None = None, limits: Limits = Limits(),
          lookup_identities: Callable[[str, str], Iterable[str]] | None = None):
    """``Admitted`` or ``Refusal`` for writing ``value`` at ``name`` with ``ttl`` seconds.

    ``zones`` are the served zones (canonical); ``lookup_values(name)`` returns the values
    already stored at a canonical name; ``operator_key`` and ``cluster_base`` pin this node's
    cluster manifest; ``lookup_identities(hash12, parent)`` returns the identity values
    stored at ``id-<hash12>....<parent>`` names (None: prekeys are checked structurally).
    Never raises on any input.
    """
    problem = _caps_problem(value, ttl, limits)
    if problem:
        return problem
    canonical = names.canonical(name)
    if canonical is None:
        return Refusal(NAME, INVALID_NAME_TEXT)
    zone = _zone_of(canonical, zones)
    if zone is None:
        return Refusal(ZONE, "record name is outside the served zones")
    existing = list(lookup_values(canonical))
    if value not in existing:
        problem = _rrset_problem(canonical, existing, value, limits)
        if problem:
            return problem
    if not _printable(value):
        return Refusal(VALUE, INVALID_VALUE_TEXT)
    context = _Context(canonical, zone, int(now), operator_key,
                       names.canonical(cluster_base) if cluster_base else None,
                       lookup_identities)
    refusal = _dmp_problem(value, context)
    if refusal:
        return refusal
    return Admitted(canonical, value, ttl, prefixes.record_type(value))


def _caps_problem(value, ttl, limits: Limits) -> Refusal | None:
    if not isinstance(value, str) or isinstance(ttl, bool) or not isinstance(ttl, int) \
            or ttl < 1:
        return Refusal(TTL, TTL_TEXT)
    if ttl > limits.max_ttl:
        return Refusal(TTL, f"ttl exceeds cap of {limits.max_ttl}s")
    if len(value.encode("utf-8", "surrogatepass")) > limits.max_value_bytes:
        return Refusal(VALUE_SIZE, f"value exceeds cap of {limits.max_value_bytes} bytes")
    return None


def rrset_wire_size(values: Iterable[str]) -> int:
    """Bytes the TXT RRset of ``values`` takes in an answer section."""
    return sum(RR_OVERHEAD + txt.rdata_length(value.encode("utf-8", "surrogatepass"))
               for value in values)


def _rrset_problem(name: str, existing: list, value: str, limits: Limits) -> Refusal | None:
    if len(existing) >= limits.max_values_per_name:
        return Refusal(RRSET_FULL, f"RRset at {name} already holds {len(existing)} values")
    size = rrset_wire_size([*existing, value])
    if size > limits.max_rrset_wire:
        return Refusal(RRSET_FULL, f"RRset at {name} would take {size} bytes of a DNS "
                                   f"message, over the cap of {limits.max_rrset_wire}")
    return None


def _zone_of(name: str, zones: Sequence[str]) -> str | None:
    """The longest served zone holding ``name`` (RFC 1034 section 4.3.2, closest enclosing)."""
    inside = [zone for zone in zones if names.within(name, zone)]
    return max(inside, key=len) if inside else None


def _printable(value: str) -> bool:
    return value.isascii() and value.isprintable() and '"' not in value


@dataclass(frozen=True)
class _Context:
    name: str
    zone: str
    now: int
    operator_key: bytes | None
    cluster_base: str | None
    lookup_identities: Callable | None


def _dmp_problem(value: str, ctx: _Context) -> Refusal | None:
    owner = classify(ctx.name, ctx.zone)
    if not value.startswith(prefixes.DMP_MARKER):
        if owner.kind is not None:
            return Refusal(NOT_DMP, f"{INVALID_VALUE_TEXT}: {ctx.name} is a DMP owner name "
                                    "and takes only v=dmp1 records")
        return None
    record_type = prefixes.record_type(value)
    if record_type is None:
        return Refusal(UNKNOWN_TYPE, f"{INVALID_VALUE_TEXT}: unknown v=dmp record type")
    check = _CHECKS[record_type]
    return check(value, owner, ctx)


def _refuse_owner(what: str, ctx: _Context) -> Refusal:
    return Refusal(OWNER, f"{INVALID_VALUE_TEXT}: a {what} does not belong at {ctx.name}")


def _invalid(what: str) -> Refusal:
    return Refusal(INVALID_RECORD, f"{INVALID_VALUE_TEXT}: {what} does not parse or verify")


def _time(what: str, problem: str) -> Refusal:
    return Refusal(TIME, f"{INVALID_VALUE_TEXT}: {what} {problem}")


def _decoded(record, what: str, module, now: int):
    """(record, None) when ``record`` parsed and meets its time rules, else (None, Refusal)."""
    if record is None:
        return None, _invalid(what)
    problem = module.time_problem(record, now)
    if problem:
        return None, _time(what, problem)
    return record, None


def _check_chunk(value, owner: Owner, ctx: _Context) -> Refusal | None:
    if owner.kind != CHUNK:
        return _refuse_owner("chunk", ctx)
    return _decoded(chunk.decode(value), "chunk", chunk, ctx.now)[1]


def _check_slot_manifest(value, owner: Owner, ctx: _Context) -> Refusal | None:
    if owner.kind != SLOT:
        return _refuse_owner("slot manifest", ctx)
    record, refusal = _decoded(slot_manifest.decode(value), "slot manifest", slot_manifest,
                               ctx.now)
    if refusal:
        return refusal
    if hashlib.sha256(record.recipient_id).hexdigest()[:12] != owner.parts[1]:
        return _refuse_owner("slot manifest for another recipient", ctx)
    return None


def _check_claim(value, owner: Owner, ctx: _Context) -> Refusal | None:
    if owner.kind not in (CLAIM, DNSMESH_CLAIM):
        return _refuse_owner("claim", ctx)
    record, refusal = _decoded(claim.decode(value), "claim", claim, ctx.now)
    if refusal:
        return refusal
    if owner.kind == CLAIM and int(owner.parts[0]) != record.slot:
        return _refuse_owner("claim for another slot", ctx)
    return None


def _check_identity(value, owner: Owner, ctx: _Context) -> Refusal | None:
    if owner.kind not in (IDENTITY_HASHED, IDENTITY_ANCHORED):
        return _refuse_owner("identity", ctx)
    record, refusal = _decoded(identity.decode(value), "identity", identity, ctx.now)
    if refusal:
        return refusal
    if owner.kind == IDENTITY_HASHED and hex_hash(record.username, 16) != owner.parts[0]:
        return _refuse_owner("identity of another username", ctx)
    return None


def _check_prekey(value, owner: Owner, ctx: _Context) -> Refusal | None:
    if owner.kind != PREKEYS:
        return _refuse_owner("prekey", ctx)
    record, refusal = _decoded(prekey.decode_unverified(value), "prekey", prekey, ctx.now)
    if refusal:
        return refusal
    if ctx.lookup_identities is None:
        return None
    keys = _identity_keys(ctx.lookup_identities(owner.parts[0], owner.parent), owner.parts[0])
    if keys and not any(prekey.decode(value, key) for key in keys):
        return Refusal(INVALID_RECORD, f"{INVALID_VALUE_TEXT}: prekey is not signed by the "
                                       "identity published for this name")
    return None


def _identity_keys(values: Iterable[str], hash12: str) -> list[bytes]:
    """Signing keys of the verifying identities among ``values`` whose username hashes to
    ``hash12`` (the lookup may return neighbours; the hash decides)."""
    keys = []
    for value in values:
        record = identity.decode(value)
        if record is not None and hex_hash(record.username, 12) == hash12:
            keys.append(record.ed25519_spk)
    return keys


def _check_cluster(value, owner: Owner, ctx: _Context) -> Refusal | None:
    if owner.kind != CLUSTER or ctx.cluster_base is None or owner.parent != ctx.cluster_base:
        return _refuse_owner("cluster manifest (only this node's cluster.<base> takes one)",
                             ctx)
    if ctx.operator_key is None:
        return Refusal(NO_KEY, f"{INVALID_VALUE_TEXT}: no operator key is pinned to verify "
                               "the cluster manifest")
    record, refusal = _decoded(cluster_manifest.decode(value, ctx.operator_key),
                               "cluster manifest", cluster_manifest, ctx.now)
    if refusal:
        return refusal
    if names.canonical(record.cluster_name) != ctx.cluster_base:
        return _refuse_owner("cluster manifest of another cluster", ctx)
    return None


def _check_bootstrap(value, owner: Owner, ctx: _Context) -> Refusal | None:
    if owner.kind != BOOTSTRAP:
        return _refuse_owner("bootstrap record", ctx)
    record, refusal = _decoded(bootstrap.decode(value), "bootstrap record", bootstrap, ctx.now)
    if refusal:
        return refusal
    if names.canonical(record.user_domain) != owner.parent:
        return _refuse_owner("bootstrap record of another domain", ctx)
    return None


def _check_rotation(value, owner: Owner, ctx: _Context) -> Refusal | None:
    return _check_key_event(value, owner, ctx, rotation, "rotation")


def _check_revocation(value, owner: Owner, ctx: _Context) -> Refusal | None:
    return _check_key_event(value, owner, ctx, revocation, "revocation")


def _check_key_event(value, owner: Owner, ctx: _Context, module, what: str):
    if owner.kind != ROTATE:
        return _refuse_owner(what, ctx)
    record, refusal = _decoded(module.decode(value), what, module, ctx.now)
    if refusal:
        return refusal
    if not _subject_fits(record.subject_type, record.subject, owner.parent):
        return _refuse_owner(f"{what} of another subject", ctx)
    return None


_USER_ROTATE_PARENT = re.compile(r"(dmp|id-[0-9a-f]{16})\..+")


def _subject_fits(subject_type: int, subject: str, parent: str) -> bool:
    """Whether the signed subject names the ``rotate.<parent>`` owner."""
    if subject_type == rotation.SUBJECT_CLUSTER:
        return parent == "cluster." + (names.canonical(subject) or "")
    if subject_type == rotation.SUBJECT_BOOTSTRAP:
        return parent == "_dmp." + (names.canonical(subject) or "")
    return _USER_ROTATE_PARENT.fullmatch(parent) is not None


def _check_heartbeat(value, owner: Owner, ctx: _Context) -> Refusal | None:
    if owner.kind not in (HEARTBEAT, SEEN):
        return _refuse_owner("heartbeat", ctx)
    return _decoded(heartbeat.decode(value), "heartbeat", heartbeat, ctx.now)[1]


_CHECKS = {
    prefixes.CHUNK: _check_chunk,
    prefixes.SLOT_MANIFEST: _check_slot_manifest,
    prefixes.IDENTITY: _check_identity,
    prefixes.PREKEY: _check_prekey,
    prefixes.CLUSTER: _check_cluster,
    prefixes.BOOTSTRAP: _check_bootstrap,
    prefixes.ROTATION: _check_rotation,
    prefixes.REVOCATION: _check_revocation,
    prefixes.HEARTBEAT: _check_heartbeat,
    prefixes.CLAIM: _check_claim,
}
