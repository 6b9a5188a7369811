"""Inspect any TXT value: which v=dmp1 record it is, its fields, and whether it holds at ``now``.

Every signed type is verified against the key it carries (that proves integrity, not
authority); a caller-supplied ``key`` additionally binds the record to that signer. A prekey
names no signer, so without ``key`` only its structure is checked. A chunk is checked by its
8-byte block checksum. Every time rule of the type applies at ``now``, including expiry for
the types whose parsers leave it to the caller (slot manifest, prekey).
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from . import (b64, bootstrap, chunk, claim, cluster_manifest, heartbeat, identity, owners,
               prefixes, prekey, revocation, rotation, slot_manifest)
from .keys import fingerprint
from .signing import PUBLIC_KEY_LEN, sha256

CHUNK = "chunk"
SLOT_MANIFEST = "slot_manifest"
IDENTITY = "identity"
PREKEY = "prekey"
CLUSTER_MANIFEST = "cluster_manifest"
BOOTSTRAP = "bootstrap"
ROTATION = "rotation"
REVOCATION = "revocation"
HEARTBEAT = "heartbeat"
CLAIM = "claim"
UNKNOWN = "unknown"  # starts with v=dmp but is no known type
TEXT = "text"  # not DMP protocol text at all

LEGACY_MANIFEST_NOTE = "legacy manifest without chunk hashes; current receivers refuse it"
UNVERIFIED_PREKEY_NOTE = ("structure checked only; a prekey names no signer, give the "
                          "owner's identity key to verify its signature")
CHUNK_KEY_NOTE = "a chunk carries no signature; the key was not used"


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` found. ``fields`` holds JSON-friendly values (bytes as hex)."""

    type: str
    valid: bool
    reason: str | None = None
    fields: dict = field(default_factory=dict)


def inspect(value: str, *, now: int, key: bytes | None = None) -> Inspection:
    """Classify, decode, verify and time-check ``value``; never raises on any ``value``.

    ``key`` (32 bytes) is the signer the record must have: the owner's identity key for a
    prekey, the old key for a rotation; it is ignored for chunks.
    """
    if key is not None and (not isinstance(key, (bytes, bytearray))
                            or len(key) != PUBLIC_KEY_LEN):
        raise ValueError("key is a 32-byte Ed25519 public key")
    key = None if key is None else bytes(key)
    if not isinstance(value, str):
        return Inspection(TEXT, False, "not a text value")
    prefix = prefixes.record_type(value)
    if prefix is None:
        return _unrecognised(value)
    return _INSPECTORS[prefix](value, now, key)


def _unrecognised(value: str) -> Inspection:
    if not value.startswith(prefixes.DMP_MARKER):
        return Inspection(TEXT, False, "not a DMP record (no v=dmp prefix)")
    head = value.split(";", 2)
    shown = ";".join(head[:2])[:40]
    return Inspection(UNKNOWN, False, f"unknown v=dmp record type ({shown!r})")


# -- per-type inspectors -----------------------------------------------------------------------

def _inspect_chunk(value: str, now: int, key: bytes | None) -> Inspection:
    blob = chunk.read_blob(value)
    if blob is None:
        return Inspection(CHUNK, False, "malformed chunk: need 168 bytes of canonical base64 "
                                        "after the prefix")
    block_end = chunk.CHECKSUM_LEN + chunk.BLOCK_LEN
    fields = {"checksum": blob[:chunk.CHECKSUM_LEN].hex(),
              "block": blob[chunk.CHECKSUM_LEN:block_end].hex(),
              "parity": blob[block_end:].hex(),
              "hash": chunk.chunk_hash(blob).hex()}
    if not chunk.checksum_ok(blob):
        return Inspection(CHUNK, False, "checksum does not match H(block)[0:8]", fields)
    return Inspection(CHUNK, True, CHUNK_KEY_NOTE if key is not None else None, fields)


def _inspect_slot_manifest(value: str, now: int, key: bytes | None) -> Inspection:
    def extras(record):
        return {"legacy": record.legacy,
                "slot": owners.slot_for(record.msg_id),
                "mailbox": owners.mailbox_label(record.recipient_id),
                "message_key": owners.message_key(record.msg_id, record.recipient_id,
                                                  record.sender_spk)}

    def note(record):
        return LEGACY_MANIFEST_NOTE if record.legacy else None

    return _inspect_signed(SLOT_MANIFEST, slot_manifest, "sender_spk", value, now, key,
                           extras, note)


def _inspect_identity(value: str, now: int, key: bytes | None) -> Inspection:
    def extras(record):
        return {"fingerprint": fingerprint(record.x25519_pk, record.ed25519_spk),
                "user_id": sha256(record.x25519_pk).hex()}

    return _inspect_signed(IDENTITY, identity, "ed25519_spk", value, now, key, extras)


def _inspect_prekey(value: str, now: int, key: bytes | None) -> Inspection:
    record = prekey.decode_unverified(value)
    if record is None:
        return _undecodable(PREKEY, value, "malformed: a prekey is a 108-byte blob with a "
                                           "non-zero id")
    fields = _fields(record) | {"signature_checked": key is not None}
    if key is not None and prekey.decode(value, key) is None:
        return Inspection(PREKEY, False, "signature does not verify with the given key", fields)
    problem = prekey.time_problem(record, now)
    if problem:
        return Inspection(PREKEY, False, problem, fields)
    return Inspection(PREKEY, True, None if key is not None else UNVERIFIED_PREKEY_NOTE, fields)


def _signed_type(type_name: str, module, signer_field: str):
    """The inspector of a type that carries its signer's key (the rotation's old key)."""
    def inspector(value: str, now: int, key: bytes | None) -> Inspection:
        return _inspect_signed(type_name, module, signer_field, value, now, key)
    return inspector


def _inspect_signed(type_name, module, signer_field, value, now, key, extras=None,
                    note=None) -> Inspection:
    # Verifying against the embedded key and then comparing it with ``key`` accepts exactly
    # what the pinned-key decoders (cluster, bootstrap) accept when given ``key``.
    record = module.decode(value)
    if record is None:
        return _undecodable(type_name, value)
    fields = _fields(record) | (extras(record) if extras else {})
    signer = getattr(record, signer_field)
    if key is not None and signer != key:
        return Inspection(type_name, False, f"signed by {signer.hex()}, not by the given key",
                          fields)
    problem = module.time_problem(record, now)
    if problem:
        return Inspection(type_name, False, problem, fields)
    return Inspection(type_name, True, note(record) if note else None, fields)


_INSPECTORS: dict[str, Callable[[str, int, bytes | None], Inspection]] = {
    prefixes.CHUNK: _inspect_chunk,
    prefixes.SLOT_MANIFEST: _inspect_slot_manifest,
    prefixes.IDENTITY: _inspect_identity,
    prefixes.PREKEY: _inspect_prekey,
    prefixes.CLUSTER: _signed_type(CLUSTER_MANIFEST, cluster_manifest, "operator_spk"),
    prefixes.BOOTSTRAP: _signed_type(BOOTSTRAP, bootstrap, "signer_spk"),
    prefixes.ROTATION: _signed_type(ROTATION, rotation, "old_spk"),
    prefixes.REVOCATION: _signed_type(REVOCATION, revocation, "revoked_spk"),
    prefixes.HEARTBEAT: _signed_type(HEARTBEAT, heartbeat, "operator_spk"),
    prefixes.CLAIM: _signed_type(CLAIM, claim, "sender_spk"),
}


# -- shared helpers ----------------------------------------------------------------------------

# Wire caps of the types that have one (docs/wire-format.md §4.5-4.10).
_WIRE_CAPS = {prefixes.CLUSTER: prefixes.MAX_SIGNED_WIRE,
              prefixes.BOOTSTRAP: prefixes.MAX_SIGNED_WIRE,
              prefixes.ROTATION: prefixes.MAX_SIGNED_WIRE,
              prefixes.REVOCATION: prefixes.MAX_SIGNED_WIRE,
              prefixes.HEARTBEAT: prefixes.MAX_SIGNED_WIRE,
              prefixes.CLAIM: prefixes.MAX_CLAIM_WIRE}


def _undecodable(type_name: str, value: str,
                 body_problem: str = "malformed body or bad signature") -> Inspection:
    """Why a value of a known type did not decode, as precisely as can be told cheaply."""
    prefix = prefixes.record_type(value)
    cap = _WIRE_CAPS.get(prefix)
    if cap is not None and len(value) > cap:
        return Inspection(type_name, False, f"longer than {cap} characters ({len(value)})")
    if b64.decode_after_prefix(value, prefix) is None:
        return Inspection(type_name, False, "not canonical base64 after the prefix")
    return Inspection(type_name, False, body_problem)


def _fields(record) -> dict:
    return {f.name: _jsonable(getattr(record, f.name)) for f in dataclasses.fields(record)}


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value
