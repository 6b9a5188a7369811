"""The one write service over the store: every path that changes records goes through it.

HTTP ``/v1/records``, anti-entropy pulls, ``dmfdns records put|delete|import`` and DNS
UPDATE all hand their writes to a ``WriteService``; it owns, in this order:

1. **authorization**: the credential of the request may ``op`` the owner name
   (``dmfdns.proto.authority.permits``: owner classes, TSIG scopes, claims);
2. **admission** (``dmfdns.proto.admission.admit``): caps, canonical name in a served zone,
   RRset cardinality, value, DMP verification;
3. **in-batch lookups**: the RRset count and the identities that verify a prekey see the
   writes admitted earlier in the same batch (an import or an UPDATE may delete, add an
   identity and its prekeys together);
4. **commit**: ``commit(accepted, now=...)`` applies a batch of already-admitted writes in
   one store transaction (``RecordStore.write_many``), so group commit can gather the
   admitted writes of concurrent requests and commit them in one call;
5. **metrics**: ``observe(path, accepted, reason)`` for every decision.

A refused write changes nothing: admission reads only, and ``write(..., atomic=True)``
commits nothing when any write of the batch is refused (a DNS UPDATE is all or nothing,
RFC 2136 section 3.4.2.1). Replicated changes (``remote_batch``) keep their own merge order
but pass the same admission.
"""

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from ..proto import names
from ..proto import admission, authority, prefixes
from ..proto.admission import Limits, Refusal
from .api import Change
from .identities import identity_values, pending_identity_values

PUBLISH = authority.PUBLISH
DELETE = authority.DELETE
UNAUTHORIZED = "unauthorized"
STORE = "store"


@dataclass(frozen=True)
class WriteRequest:
    """One write as a path received it: ``name`` as given, ``value`` None on a delete
    means the whole RRset."""

    op: str
    name: str
    value: str | None = None
    ttl: int = 0


@dataclass(frozen=True)
class Accepted:
    """A write that may be committed: canonical ``name``; ``expiry`` for a publish."""

    op: str
    name: str
    value: str | None
    expiry: float = 0.0
    record_type: str | None = None

    def store_op(self) -> tuple:
        if self.op == PUBLISH:
            return ("put", self.name, self.value, self.expiry)
        return ("delete", self.name, self.value)


@dataclass(frozen=True)
class Outcome:
    """What ``write`` did: one result per request (``Accepted`` or ``Refusal``) and, when
    committed, the number of values each accepted write changed."""

    results: tuple
    changed: tuple = ()
    committed: bool = False

    @property
    def refusals(self) -> list[Refusal]:
        return [r for r in self.results if isinstance(r, Refusal)]


class WriteService:
    """Admission and commit of record writes for one store and its served zones."""

    def __init__(self, store, *, zones: Sequence[str], limits: Limits = Limits(),
                 operator_key: bytes | None = None, cluster_base: str | None = None,
                 observe: Callable[[str, bool, str | None], None] | None = None):
        self.store = store
        self.zones = tuple(zones)
        self.limits = limits
        self.operator_key = operator_key
        self.cluster_base = cluster_base
        self.observe = observe or (lambda path, accepted, reason: None)

    # --- local writes ---------------------------------------------------------------------

    def permits(self, credential, op: str, name: str) -> bool:
        """Whether ``credential`` may ``op`` the (raw) owner ``name``: a path that must
        answer "unauthorized" before it reads a body asks this first."""
        return authority.permits(credential, op, names.canonical(name))

    def admit(self, requests: Iterable[WriteRequest], *, now: float, path: str,
              credential=authority.ANYONE) -> list:
        """``Accepted`` or ``Refusal`` for each request, in order; each sees the ones
        accepted before it. Reads the store, never writes it."""
        batch = _AdmissionBatch(self, now)
        results = []
        for request in requests:
            result = batch.admit(request, credential)
            self.observe(path, isinstance(result, Accepted),
                         result.reason if isinstance(result, Refusal) else None)
            results.append(result)
        return results

    def commit(self, accepted: Sequence[Accepted], *, now: float) -> list[int]:
        """Apply already-admitted writes in one store transaction; the values each changed.
        StoreError (a full map, a failed disk) means nothing was written."""
        if not accepted:
            return []
        return self.store.write_many([a.store_op() for a in accepted], now=now)

    def write(self, requests: Iterable[WriteRequest], *, now: float, path: str,
              credential=authority.ANYONE, atomic: bool = True) -> Outcome:
        """Admit, then commit: with ``atomic`` nothing when any request is refused,
        otherwise the accepted ones."""
        results = tuple(self.admit(requests, now=now, path=path, credential=credential))
        accepted = [r for r in results if isinstance(r, Accepted)]
        if not accepted or (atomic and len(accepted) != len(results)):
            return Outcome(results)
        return Outcome(results, tuple(self.commit(accepted, now=now)), True)

    # --- replicated changes ---------------------------------------------------------------

    def remote_batch(self, path: str = "sync") -> "RemoteBatch":
        """An admission batch for changes pulled from a peer (see ``RemoteBatch``)."""
        return RemoteBatch(self, path)


@dataclass
class _AdmissionBatch:
    """The state of one admission batch: what each touched name will hold after the
    writes accepted so far, and the identities they add."""

    service: WriteService
    now: float
    after: dict = field(default_factory=dict)        # canonical name -> list of values
    identities: dict = field(default_factory=dict)   # canonical name -> identity values

    def admit(self, request: WriteRequest, credential):
        service = self.service
        name = names.canonical(request.name) if isinstance(request.name, str) else None
        if request.op not in (PUBLISH, DELETE) or not authority.permits(
                credential, request.op, name):
            return Refusal(UNAUTHORIZED, "unauthorized")
        if request.op == DELETE:
            return self._delete(request, name)
        result = admission.admit(
            request.name, request.value, request.ttl, zones=service.zones, now=self.now,
            lookup_values=self.values, operator_key=service.operator_key,
            cluster_base=service.cluster_base, limits=service.limits,
            lookup_identities=self.lookup_identities)
        if isinstance(result, Refusal):
            return result
        values = self.values(result.name)
        if result.value not in values:
            values.append(result.value)
        if result.record_type == prefixes.IDENTITY:
            self.identities.setdefault(result.name, []).append(result.value)
        return Accepted(PUBLISH, result.name, result.value, self.now + result.ttl,
                        result.record_type)

    def _delete(self, request: WriteRequest, name: str | None):
        service = self.service
        if name is None:
            return Refusal(admission.NAME, admission.INVALID_NAME_TEXT)
        if not any(names.within(name, zone) for zone in service.zones):
            return Refusal(admission.ZONE, "record name is outside the served zones")
        value = request.value
        if value is not None and (not isinstance(value, str) or len(
                value.encode("utf-8", "surrogatepass")) > service.limits.max_value_bytes):
            return Refusal(admission.VALUE, admission.INVALID_VALUE_TEXT)
        values = self.values(name)
        values[:] = [] if value is None else [v for v in values if v != value]
        return Accepted(DELETE, name, value)

    def values(self, name: str) -> list[str]:
        """The values ``name`` holds after the writes accepted so far (a live list)."""
        found = self.after.get(name)
        if found is None:
            found = self.after[name] = [e.value for e in self.service.store.get(name, self.now)]
        return found

    def lookup_identities(self, hash12: str, parent: str) -> list[str]:
        stored = identity_values(self.service.store, hash12, parent, now=self.now)
        return stored + pending_identity_values(self.identities, hash12, parent)


class RemoteBatch:
    """Admission of one batch of replicated changes. A tombstone only needs a name in a
    served zone and a value within the caps: it removes, never adds. An identity admitted
    in the batch verifies the prekeys after it. ``apply`` merges the admitted changes in
    one transaction (``RecordStore.apply_remote_many``)."""

    def __init__(self, service: WriteService, path: str):
        self.service = service
        self.path = path
        self._batch: dict[str, list[str]] = {}

    @property
    def limits(self) -> Limits:
        return self.service.limits

    def check(self, name: str, value: str, ttl: int, now: float, deleted: bool) -> str | None:
        """None when the change may be applied, else a refusal reason (also observed)."""
        reason = self._reason(name, value, ttl, now, deleted)
        self.service.observe(self.path, reason is None, reason)
        return reason

    def _reason(self, name, value, ttl, now, deleted) -> str | None:
        service = self.service
        if deleted:
            if not any(names.within(name, zone) for zone in service.zones):
                return admission.ZONE
            if len(value.encode("utf-8", "surrogatepass")) > service.limits.max_value_bytes:
                return admission.VALUE_SIZE
            return None
        result = admission.admit(
            name, value, ttl, zones=service.zones, now=now, limits=service.limits,
            lookup_values=lambda owner: [v.value for v in service.store.get(owner, now)],
            operator_key=service.operator_key, cluster_base=service.cluster_base,
            lookup_identities=lambda h, p: (
                identity_values(service.store, h, p, now=now)
                + pending_identity_values(self._batch, h, p)))
        if isinstance(result, Refusal):
            return result.reason
        if result.record_type == prefixes.IDENTITY:
            self._batch.setdefault(result.name, []).append(result.value)
        return None

    def apply(self, changes: Sequence[Change], now: float, meta: dict | None = None):
        """Merge the admitted ``changes`` in one transaction (``ApplyResult``), with the
        ``meta`` values (a sync cursor) in the same transaction."""
        return self.service.store.apply_remote_many(changes, now, meta)

