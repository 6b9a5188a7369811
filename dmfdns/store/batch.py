"""One write transaction's work over a store's tables, shared by MemoryStore and LmdbStore.

A ``Batch`` applies checked puts, deletes, replicated changes and sweeps to a ``Tables``
object (the store's view of one open write transaction) and keeps the derived tables in
step: the change log (one entry per ``(name, value)``, moved to the tail on every change),
the expiry index, the per-name TXT blob and the counters in ``meta``. The log time is taken
once per batch, so every change of one transaction shares it (docs/decisions.md §3).
"""

from typing import Iterator, Protocol

from ..dns import rrblob
from ..proto.names import from_reversed_key
from . import journal
from .api import Change, Cursor
from . import touched
from .changelog import next_ts
from .inputs import Item, Owner
from .merge import NEW_ORDER, Entry, local_delete, local_put, merge_remote

META_PREFIX = "store:"
LAST_TS = "store:last_ts_ms"
GENERATION = "store:generation"
VALUES = "store:values"
ORDER = "store:order"
SCHEMA = "store:schema"


class Tables(Protocol):
    """The primitive operations a store offers inside one transaction. ``vhash`` is the raw
    32-byte sha256 of the value; ``rkey`` the reversed-label key of the name."""

    def entry(self, rkey: bytes, vhash: bytes) -> Entry | None: ...
    def entries(self, rkey: bytes) -> list[tuple[bytes, Entry]]: ...
    def set_entry(self, rkey: bytes, vhash: bytes, entry: Entry) -> None: ...
    def drop_entry(self, rkey: bytes, vhash: bytes) -> None: ...
    def set_blob(self, rkey: bytes, blob: bytes | None) -> None: ...
    def blob_at_or_after(self, rkey: bytes) -> tuple[bytes, bytes] | None:
        """The first ``(rkey, blob)`` of the name table at or after ``rkey`` in byte
        order (reads only)."""
    def rrsig(self, rkey: bytes) -> bytes | None:
        """The RRSIG record stored for the name's blob (``dns.rrsig_store``)."""
    def set_rrsig(self, rkey: bytes, record: bytes | None) -> None: ...
    def log_add(self, position: Cursor) -> None: ...
    def log_drop(self, position: Cursor) -> None: ...
    def log_after(self, cursor: Cursor) -> Iterator[Cursor]: ...
    def expiry_add(self, expiry_ms: int, rkey: bytes, vhash: bytes) -> None: ...
    def expiry_drop(self, expiry_ms: int, rkey: bytes, vhash: bytes) -> None: ...
    def expired(self, now_ms: int, limit: int) -> list[tuple[int, bytes, bytes]]: ...
    def meta(self, key: str) -> bytes | None: ...
    def set_meta(self, key: str, value: bytes) -> None: ...
    def auth_get(self, key: bytes) -> bytes | None: ...
    def auth_scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]: ...
    def auth_set(self, key: bytes, value: bytes | None) -> None: ...
    def journal_add(self, generation: int, raw: bytes) -> None: ...
    def journal_first(self) -> tuple[int, bytes] | None:
        """The oldest ``(generation, entry)`` of the transfer journal."""
    def journal_drop(self, generation: int) -> None: ...
    def journal_from(self, generation: int) -> Iterator[tuple[int, bytes]]:
        """``(generation, entry)`` pairs from ``generation`` on, ascending."""


def meta_int(tables, key: str) -> int:
    raw = tables.meta(key)
    return int(raw) if raw else 0


def to_change(name: str, vhash: bytes, entry: Entry) -> Change:
    return Change(ts_ms=entry.ts_ms, name=name, value_hash=vhash.hex(),
                  value=entry.value.decode("ascii"), expiry=entry.expiry_ms / 1000,
                  deleted=entry.deleted, origin=entry.origin, written_ms=entry.written_ms)


def blob_of(entries, now_ms: int) -> bytes:
    """The TXT blob of a name: its live values in insertion order."""
    visible = sorted((e for _, e in entries if e.visible(now_ms)), key=lambda e: e.order)
    return rrblob.build((e.value, e.expiry_ms) for e in visible)


class Batch:
    """``journal_limit`` > 0 keeps the transfer journal (``journal``) to that many
    operations; 0 writes none. ``sign(name, blob, now_ms)`` makes the RRSIG record stored
    with a name's new blob (``dns.rrsig_store``; None: the name is not signed)."""

    def __init__(self, tables: Tables, now_ms: int, node_id: str, journal_limit: int = 0,
                 sign=None):
        self._tables = tables
        self._sign = sign
        self._rewritten: set[bytes] = set()     # names whose live values changed
        self._journal_limit = journal_limit
        self._ops: list = []
        self._now_ms = now_ms
        self._node_id = node_id
        self.ts_ms = next_ts(meta_int(tables, LAST_TS), now_ms)
        self.changed = 0
        self.removed = 0
        self._live_delta = 0
        self._next_order: int | None = None
        self._touched: dict[bytes, str] = {}

    def put(self, item: Item) -> bool:
        old = self._tables.entry(item.owner.key, item.value_hash)
        new = local_put(old, item.value, item.expiry_ms, ts_ms=self.ts_ms,
                        now_ms=self._now_ms, node_id=self._node_id)
        return self._store(item.owner, item.value_hash, old, new)

    def delete(self, owner: Owner, vhash: bytes | None) -> int:
        if vhash is None:
            targets = self._tables.entries(owner.key)
        else:
            targets = [(vhash, self._tables.entry(owner.key, vhash))]
        removed = 0
        for target_hash, old in targets:
            new = local_delete(old, ts_ms=self.ts_ms, now_ms=self._now_ms,
                               node_id=self._node_id)
            removed += self._store(owner, target_hash, old, new)
        return removed

    def apply(self, owner: Owner, vhash: bytes, incoming: Entry) -> bool:
        old = self._tables.entry(owner.key, vhash)
        new = merge_remote(old, incoming, ts_ms=self.ts_ms, now_ms=self._now_ms)
        return self._store(owner, vhash, old, new)

    def sweep(self, limit: int) -> int:
        """Remove up to ``limit`` entries whose expiry has passed, oldest first."""
        for expiry_ms, rkey, vhash in self._tables.expired(self._now_ms, limit):
            self._tables.expiry_drop(expiry_ms, rkey, vhash)
            old = self._tables.entry(rkey, vhash)
            if old is None or old.expiry_ms != expiry_ms:
                continue
            name = from_reversed_key(rkey)
            if not old.deleted:
                self._ops.append((journal.DELETE, name, old.value))
            self._tables.drop_entry(rkey, vhash)
            self._tables.log_drop(Cursor(old.ts_ms, name, vhash.hex()))
            self._live_delta -= not old.deleted
            self._touched[rkey] = name
            self.removed += 1
        return self.removed

    def finish(self) -> None:
        """Rebuild the blobs of the names touched and persist the counters; call once,
        inside the transaction, before it commits."""
        for rkey, name in self._touched.items():
            blob = blob_of(self._tables.entries(rkey), self._now_ms) or None
            self._tables.set_blob(rkey, blob)
            self._keep_signed(rkey, name, blob)
        if not (self.changed or self.removed):
            return
        generation = self._bump(GENERATION, 1)
        touched.record(self._tables, generation, self._touched)
        if self._journal_limit:
            self._journal(generation)
        if self._live_delta:
            self._bump(VALUES, self._live_delta)
        if self.changed:
            self._tables.set_meta(LAST_TS, str(self.ts_ms).encode())
        if self._next_order is not None:
            self._tables.set_meta(ORDER, str(self._next_order - 1).encode())

    def _keep_signed(self, rkey: bytes, name: str, blob: bytes | None) -> None:
        """The stored RRSIGs always belong to the blob beside them: a name whose values
        changed is signed again here, in the same transaction, or loses its RRSIGs (the
        responder then signs on the fly). A sweep only drops values that are no longer
        live, which every step of the record already leaves out (``dns.rrsig_store``)."""
        if blob is None:
            self._tables.set_rrsig(rkey, None)
        elif rkey in self._rewritten:
            record = self._sign(name, blob, self._now_ms) if self._sign else None
            self._tables.set_rrsig(rkey, record)

    def _store(self, owner: Owner, vhash: bytes, old: Entry | None, new: Entry | None) -> bool:
        if new is None:
            return False
        tables, hexhash = self._tables, vhash.hex()
        if old is not None:
            tables.log_drop(Cursor(old.ts_ms, owner.name, hexhash))
            tables.expiry_drop(old.expiry_ms, owner.key, vhash)
        if new.order == NEW_ORDER:
            new = Entry(new.value, new.expiry_ms, new.written_ms, new.origin, new.deleted,
                        new.ts_ms, self._take_order())
        was_present, present = old is not None and not old.deleted, not new.deleted
        if was_present != present:
            self._ops.append((journal.ADD if present else journal.DELETE, owner.name,
                              new.value))
        tables.set_entry(owner.key, vhash, new)
        tables.log_add(Cursor(new.ts_ms, owner.name, hexhash))
        tables.expiry_add(new.expiry_ms, owner.key, vhash)
        self._live_delta += (not new.deleted) - (old is not None and not old.deleted)
        self._touched[owner.key] = owner.name
        self._rewritten.add(owner.key)
        self.changed += 1
        return True

    def _journal(self, generation: int) -> None:
        """Record this generation's operations and drop the oldest generations past the
        bound (``journal`` module)."""
        tables = self._tables
        tables.journal_add(generation, journal.encode(self._ops))
        total = meta_int(tables, journal.JOURNAL_OPS) + journal.cost(self._ops)
        while total > self._journal_limit:
            oldest = tables.journal_first()
            if oldest is None:
                total = 0
                break
            tables.journal_drop(oldest[0])
            total -= max(1, journal.count(oldest[1]))
        tables.set_meta(journal.JOURNAL_OPS, str(total).encode())

    def _take_order(self) -> int:
        if self._next_order is None:
            self._next_order = meta_int(self._tables, ORDER) + 1
        order = self._next_order
        self._next_order += 1
        return order

    def _bump(self, key: str, delta: int) -> int:
        value = meta_int(self._tables, key) + delta
        self._tables.set_meta(key, str(value).encode())
        return value
