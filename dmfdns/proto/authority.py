"""Who may write which owner name: the one authorization rule of every write path.

A write arrives with a credential; ``permits(credential, op, name)`` says whether it may
``op`` (``PUBLISH`` or ``DELETE``) the canonical owner ``name``:

* ``ANYONE``: open mode, the operator, the operator's CLI and replication (a pulled
  value was authorized where it was written) may write everything admission lets in;
* ``UserToken(subject)``: a per-user bearer token (docs/compatibility.md §2.2):

  - **owner-exclusive** names: the subject's own identity, prekey and rotation names:
    ``id-<hex16(H(user))>``, ``prekeys.id-<hex12(H(user))>``, ``rotate.id-<hex16>``, and
    for a ``user@domain`` subject ``dmp.<user>.<domain>`` and ``rotate.dmp.<user>.<domain>``;
    publish and delete;
  - **shared** names: mailbox slots, chunks and claims (``slot-N.mb-*``, ``chunk-NNNN-*``,
    ``claim-N.mb-*``): any live token may publish; deleting is for the operator only, so
    one user cannot wipe another's mail;
  - everything else (``cluster.``, ``_dmp.``, heartbeats, plain names) is operator-only;

* ``TsigScope(key_name, suffixes)``: a TSIG key minted at registration (docs/compatibility.md
  §2.4). The owner must equal a suffix or lie below it; a ``*`` in a suffix label
  matches within that single label. Deletes go only through literal suffixes,
  never a wildcard one (the reference's fix for its issue #59);
* ``CLAIMANT``: an unsigned DNS UPDATE, which may only add claims at
  ``claim-N.mb-<hex12>.<zone>`` (the first-contact path; its value is checked by
  admission, its rate by the claim budget).
"""

import hashlib
import re
from dataclasses import dataclass

from . import admission

PUBLISH = "publish"
DELETE = "delete"


@dataclass(frozen=True)
class _Anyone:
    pass


@dataclass(frozen=True)
class _Claimant:
    pass


ANYONE = _Anyone()
CLAIMANT = _Claimant()


@dataclass(frozen=True)
class UserToken:
    subject: str


@dataclass(frozen=True)
class TsigScope:
    key_name: str
    suffixes: tuple[str, ...]


_SHARED_KINDS = (admission.SLOT, admission.CHUNK, admission.CLAIM)


def permits(credential, op: str, name: str | None) -> bool:
    """Whether ``credential`` may ``op`` the canonical owner ``name`` (None: a name that
    did not parse, which only ``ANYONE`` may attempt; admission then refuses it)."""
    if credential is ANYONE or credential == ANYONE:
        return True
    if name is None or op not in (PUBLISH, DELETE):
        return False
    if isinstance(credential, UserToken):
        return user_may_write(credential.subject, name, op)
    if isinstance(credential, TsigScope):
        return scope_permits(credential.suffixes, name, op)
    if credential == CLAIMANT:
        return op == PUBLISH and admission.classify(name).kind == admission.CLAIM
    return False


# --- per-user tokens --------------------------------------------------------------------------

def user_may_write(subject: str, name: str, op: str) -> bool:
    """The multi-tenant rule for a user token of ``subject`` on canonical ``name``."""
    owner = admission.classify(name)
    if owner.kind in _SHARED_KINDS:
        return op == PUBLISH
    return owns(subject, owner)


def owns(subject: str, owner: admission.Owner) -> bool:
    """Whether ``owner`` is one of the subject's owner-exclusive names."""
    user, _, domain = subject.partition("@")
    anchored = f"{user}.{domain.lower().rstrip('.')}" if domain else None
    hash16 = admission.hex_hash(user, 16)
    if owner.kind == admission.IDENTITY_HASHED:
        return owner.parts[0] == hash16
    if owner.kind == admission.PREKEYS:
        return owner.parts[0] == hash16[:12]
    if owner.kind == admission.IDENTITY_ANCHORED:
        return anchored is not None and owner.parent == anchored
    if owner.kind == admission.ROTATE:
        inner = admission.classify(owner.parent)
        if inner.kind == admission.IDENTITY_HASHED:
            return inner.parts[0] == hash16
        return anchored is not None and owner.parent == "dmp." + anchored
    return False


# --- TSIG key scopes --------------------------------------------------------------------------

def scope_permits(suffixes, name: str, op: str) -> bool:
    """Whether some suffix of a TSIG key's scope covers ``name`` for ``op``."""
    labels = name.split(".")
    for suffix in suffixes:
        wild = "*" in suffix
        if op == DELETE and wild:
            continue
        if _covers(suffix.split("."), labels):
            return True
    return False


def _covers(suffix_labels: list[str], labels: list[str]) -> bool:
    if len(suffix_labels) > len(labels):
        return False
    tail = labels[len(labels) - len(suffix_labels):]
    return all(_label_matches(pattern, label) for pattern, label in zip(suffix_labels, tail))


def _label_matches(pattern: str, label: str) -> bool:
    """One label against a pattern whose ``*`` match any run of characters within the
    label (the reference mints ``chunk-*-*``, two in one label)."""
    if "*" not in pattern:
        return pattern == label
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), label) is not None


def minted_suffixes(zone: str, local_part: str, spk_hex: str, x25519_pub: bytes | None,
                    *, tight: bool = False, loose: bool = False) -> tuple[str, ...]:
    """The scope the reference mints at TSIG registration (docs/compatibility.md §2.4)."""
    if loose:
        return (zone,)
    digest = hashlib.sha256(local_part.encode("utf-8")).hexdigest()
    suffixes = [f"id-{digest[:16]}.{zone}", f"id-{digest[:12]}.{zone}",
                f"_dnsmesh-claim-{spk_hex[:16]}.{zone}"]
    if not tight:
        suffixes += [f"_dnsmesh-claim-*.{zone}", f"slot-*.mb-*.{zone}",
                     f"chunk-*-*.{zone}", f"claim-*.mb-*.{zone}"]
    if x25519_pub is not None:
        mailbox = hashlib.sha256(hashlib.sha256(x25519_pub).digest()).hexdigest()[:12]
        suffixes.append(f"mb-{mailbox}.{zone}")
    return tuple(suffixes)
