"""The RecordStore operations written once over a store's tables.

MemoryStore and LmdbStore differ only in their tables and transactions: each provides
``_writing()`` (a context manager yielding the tables of one write transaction, committed
durably on a clean exit, discarded on an exception) and ``_reading()`` (a short read
snapshot). Everything else, from checks to merge to paging, lives here, so the contract
suite exercises one algorithm over two storage layers. The two DNS hot-path reads are each
store's own, written for speed, by the name's reversed-label key (``packed_txt_at``,
``descendants_live_until``, which the lean path calls with a key built from the wire); their
by-name forms (``packed_txt``, ``has_descendants``) check the name and are written here.
Blobs are read only through ``dmfdns.dns.rrblob``.

``generation()`` is read on every DNS answer (the SOA serial, the answer cache's validity),
so a handle that makes the writes keeps it in memory: it is noted from the write
transaction after each commit. That is exact because the node is the single writer of its
store (``dmfdns.node.NodeLock``; LMDB refuses a second handle in one process); its writes
may run in a thread of their own (``group_commit``), so a write notes its generation only
if no other write began meanwhile, and a generation read from the store is noted only if
no write began or ended meanwhile (otherwise it stays unknown and is read again). A read-only
LMDB handle (a DNS worker process) sees another process's commits, so it reads the counter
from the store every time.
"""

import threading
from contextlib import AbstractContextManager, contextmanager
from typing import Iterable

from ..dns import rrblob
from ..dns.rrblob import FOREVER_MS
from ..proto.names import from_reversed_key, reversed_key
from . import inputs, journal, touched
from .api import ApplyResult, Change, ChangesPage, Cursor, StoreError, Value
from .batch import GENERATION, META_PREFIX, Batch, Tables, meta_int, to_change
from .changelog import MAX_PAGE, STABLE_HORIZON_MS, page

ENT_PROBE = 8
"""How many descendants ``has_descendants`` checks for a live value before it answers
True anyway (a subtree of expired, unswept names counts as existing until swept)."""


def probe_descendants(blobs, now_ms: int) -> int | None:
    """``descendants_live_until`` over the blobs of the names below one name, in key order.

    None when ``has_descendants`` is False: fewer than ``ENT_PROBE`` names below, none live
    (it stays False as time goes on, until a write). Otherwise the last millisecond through
    which it stays True for certain: the first live blob's last live moment, or FOREVER_MS
    when the first ``ENT_PROBE`` are all expired (they count until swept, and the sweep is
    a write)."""
    for probe, blob in enumerate(blobs, 1):
        last = rrblob.live_until(blob, now_ms)
        if last is not None:
            return last
        if probe == ENT_PROBE:
            return FOREVER_MS
    return None


def _copy(raw) -> bytes | None:
    return None if raw is None else bytes(raw)


class TableStore:
    """The shared half of MemoryStore and LmdbStore."""

    node_id: str
    horizon_ms: int
    _keeps_generation = True
    """False for a handle whose store another process writes (read-only LMDB)."""
    sign_blob = None
    """``sign(name, blob, now_ms) -> RRSIG record or None``, called inside every write
    transaction for each name whose values it changed (``dns.rrsig_store``); None stores
    no RRSIGs (and drops those of the names written)."""

    def __init__(self, node_id: str, horizon_ms: int, journal_limit: int = 0):
        self.node_id = inputs.origin(node_id)
        if isinstance(journal_limit, bool) or not isinstance(journal_limit, int) \
                or journal_limit < 0:
            raise StoreError(f"invalid journal_limit: {journal_limit!r}")
        self.journal_limit = journal_limit
        if isinstance(horizon_ms, bool) or not isinstance(horizon_ms, int) or horizon_ms < 0:
            raise StoreError(f"invalid horizon_ms: {horizon_ms!r}")
        self.horizon_ms = horizon_ms
        self._generation: int | None = None     # the committed generation, once known
        # A write may run in another thread (group commit) while the reactor reads: the
        # lock and the count of writes begun keep a reader from noting a generation that a
        # write committed past in the meantime.
        self._generation_lock = threading.Lock()
        self._writes_begun = 0

    def _writing(self, drain: bool = False) -> AbstractContextManager[Tables]:
        """A write transaction; ``drain`` marks one that only removes (deletes, sweeps),
        which a store with a size cap lets into the room it keeps for them."""
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Tables]:
        raise NotImplementedError

    def _batch(self, tables, now_ms: int) -> Batch:
        """Every write goes through one of these (the journal needs to see them all)."""
        return Batch(tables, now_ms, self.node_id, self.journal_limit, self.sign_blob)

    @contextmanager
    def _write(self, drain: bool = False):
        """``_writing(drain)``, noting the generation it committed. While a write is under
        way, or after one failed, the generation is unknown and read from the store again."""
        with self._generation_lock:
            self._writes_begun += 1
            mine = self._writes_begun
            self._generation = None
        with self._writing(drain) as tables:
            yield tables
            generation = meta_int(tables, GENERATION)
        with self._generation_lock:
            self._writes_begun += 1
            # Another write that began meanwhile (one thread committing while another
            # waits for LMDB's write lock) may have committed after this one: only the
            # last write to end with none other begun may note its generation.
            if self._keeps_generation and self._writes_begun == mine + 1:
                self._generation = generation

    # writes

    def put(self, name: str, value: str, *, expiry: float, now: float) -> bool:
        return self.put_many([(name, value, expiry)], now=now) == 1

    def put_many(self, items: Iterable[tuple[str, str, float]], *, now: float) -> int:
        now_ms = inputs.now_ms(now)
        checked = [inputs.item(*self._triple(item)) for item in items]
        with self._write() as tables:
            batch = self._batch(tables, now_ms)
            changed = sum(batch.put(item) for item in checked)
            batch.finish()
        return changed

    def delete(self, name: str, value: str | None = None, *, now: float) -> int:
        now_ms = inputs.now_ms(now)
        owner = inputs.owner(name)
        vhash = None if value is None else inputs.item(name, value, 0).value_hash
        with self._write(drain=True) as tables:
            batch = self._batch(tables, now_ms)
            removed = batch.delete(owner, vhash)
            batch.finish()
        return removed

    def write_many(self, ops: Iterable[tuple], *, now: float) -> list[int]:
        """Mixed local puts and deletes in one transaction, in order: ``("put", name, value,
        expiry)`` and ``("delete", name, value or None)``. Every op is checked before any
        table is touched, so a bad one raises StoreError and nothing is written. The list
        says how many values each op changed (a put: 0 or 1)."""
        now_ms = inputs.now_ms(now)
        checked = [self._local_op(op) for op in ops]
        with self._write(drain=all(kind == "delete" for kind, _ in checked)) as tables:
            batch = self._batch(tables, now_ms)
            counts = [int(batch.put(target)) if kind == "put" else batch.delete(*target)
                      for kind, target in checked]
            batch.finish()
        return counts

    def _local_op(self, op) -> tuple:
        kind = op[0] if isinstance(op, tuple) and op else None
        if kind == "put" and len(op) == 4:
            return "put", inputs.item(*op[1:])
        if kind == "delete" and len(op) == 3:
            owner = inputs.owner(op[1])
            vhash = None if op[2] is None else inputs.item(op[1], op[2], 0).value_hash
            return "delete", (owner, vhash)
        raise StoreError("write_many ops are (\"put\", name, value, expiry) or "
                         "(\"delete\", name, value or None)")

    def apply_remote(self, change: Change, now: float) -> bool:
        now_ms = inputs.now_ms(now)
        owner, vhash, entry = inputs.remote(change, now_ms)
        with self._write() as tables:
            batch = self._batch(tables, now_ms)
            changed = batch.apply(owner, vhash, entry)
            batch.finish()
        return changed

    def apply_remote_many(self, changes: Iterable[Change], now: float,
                          meta: dict | None = None) -> ApplyResult:
        now_ms = inputs.now_ms(now)
        accepted, rejected = [], []
        for change in changes:
            try:
                accepted.append(inputs.remote(change, now_ms))
            except StoreError as error:
                rejected.append((change, str(error)))
        meta = dict(meta or {})
        for key, value in meta.items():
            self._check_meta_value(key, value)
        if not accepted and not meta:
            return ApplyResult(0, tuple(rejected))
        with self._write() as tables:
            batch = self._batch(tables, now_ms)
            changed = sum(batch.apply(*checked) for checked in accepted)
            batch.finish()
            for key, value in meta.items():
                tables.set_meta(key, bytes(value))
        return ApplyResult(changed, tuple(rejected))

    def sweep(self, now: float, limit: int, *, drain: bool = True) -> int:
        """``drain`` lets the sweep use the room kept for removals (``_writing``); a sweep
        committed in a thread beside the reactor's reads passes False (StoreFull then)."""
        now_ms = inputs.now_ms(now)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise StoreError(f"invalid sweep limit: {limit!r}")
        with self._write(drain=drain) as tables:
            batch = self._batch(tables, now_ms)
            removed = batch.sweep(limit)
            batch.finish()
        return removed

    # stored RRSIGs (dns.rrsig_store): the background re-signer's scan and writes

    def signing_scan(self, after: bytes, limit: int) -> list[tuple[bytes, bytes, bytes | None]]:
        """Up to ``limit`` ``(key, blob, RRSIG record or None)`` of the names whose
        reversed-label key sorts after ``after``, in key order, from one read snapshot."""
        found, seek = [], after + b"\x00"
        with self._reading() as tables:
            while len(found) < limit:
                hit = tables.blob_at_or_after(seek)
                if hit is None:
                    break
                key = bytes(hit[0])
                found.append((key, bytes(hit[1]), _copy(tables.rrsig(key))))
                seek = key + b"\x00"
        return found

    def resign(self, keys, now: float) -> int:
        """Sign the names with ``keys`` again from their blobs as they are now, in one
        write transaction (the blob read there, so a write that ran since the scan is
        what gets signed); how many records it stored. Not a change of the records: the
        generation stays."""
        sign, now_ms, stored = self.sign_blob, inputs.now_ms(now), 0
        if sign is None:
            return 0
        with self._writing() as tables:
            for key in keys:
                hit = tables.blob_at_or_after(key)
                if hit is None or bytes(hit[0]) != key:
                    continue
                record = sign(from_reversed_key(key), bytes(hit[1]), now_ms)
                tables.set_rrsig(key, record)
                stored += record is not None
        return stored

    # the auth table (credentials): opaque byte keys and values, one transaction per call

    def auth_get(self, key: bytes) -> bytes | None:
        with self._reading() as tables:
            return tables.auth_get(key)

    def auth_scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every ``(key, value)`` whose key starts with ``prefix``, in key order."""
        with self._reading() as tables:
            return tables.auth_scan(prefix)

    def auth_write(self, changes, update=None) -> None:
        """Set (or, for a None value, delete) ``changes`` in one durable transaction.
        ``update(reader)``, when given, runs inside the transaction first and returns more
        changes computed from what it reads through ``reader.auth_get(key)`` and
        ``reader.auth_scan(prefix)`` (a read-modify-write no other writer, in this process
        or another, can interleave with); an exception from it writes nothing."""
        with self._writing() as tables:
            found = dict(changes)
            if update is not None:
                found.update(update(tables))
            for key, value in found.items():
                tables.auth_set(key, value)

    def meta_set(self, key: str, value: bytes) -> None:
        self._check_meta_value(key, value)
        with self._write() as tables:
            tables.set_meta(key, bytes(value))

    def _check_meta_value(self, key, value) -> None:
        self._check_meta_key(key)
        if key.startswith(META_PREFIX):
            raise StoreError(f"meta keys starting with {META_PREFIX!r} belong to the store")
        if not isinstance(value, (bytes, bytearray)):
            raise StoreError("meta values are bytes")

    # reads

    def get(self, name: str, now: float) -> list:
        owner, now_ms = inputs.owner(name), inputs.now_ms(now)
        with self._reading() as tables:
            found = tables.entries(owner.key)
        live = sorted((e for _, e in found if e.visible(now_ms)), key=lambda e: e.order)
        return [Value(e.value.decode("ascii"), e.expiry_ms / 1000) for e in live]

    def changes_for(self, name: str, now: float) -> list[Change]:
        owner, now_ms = inputs.owner(name), inputs.now_ms(now)
        with self._reading() as tables:
            found = tables.entries(owner.key)
        alive = sorted(((h, e) for h, e in found if e.alive(now_ms)), key=lambda he: he[1].order)
        return [to_change(owner.name, h, e) for h, e in alive]

    def changes_after(self, cursor: Cursor, limit: int, *, now: float,
                      tombstones: bool = True) -> ChangesPage:
        now_ms = inputs.now_ms(now)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise StoreError(f"invalid page limit: {limit!r} (1..{MAX_PAGE})")
        after = self._check_cursor(cursor)
        with self._reading() as tables:
            return page(tables.log_after(after), lambda p: self._logged(tables, p),
                        after=after, limit=limit, now_ms=now_ms,
                        horizon_ms=self.horizon_ms, tombstones=tombstones)

    def names_with_prefix(self, parent: str, label_prefix: str, *, now: float,
                          limit: int) -> list[str]:
        below = inputs.owner(parent).key + b"."
        start = below + inputs.label_prefix(label_prefix)
        limit, now_ms = inputs.names_limit(limit), inputs.now_ms(now)
        found = []
        with self._reading() as tables:
            seek = start
            while len(found) < limit:
                hit = tables.blob_at_or_after(seek)
                if hit is None or not hit[0].startswith(start):
                    break
                key, blob = hit
                dot = key.find(b".", len(below))
                if dot != -1:
                    # A name below a child: jump past that child's subtree ("/" is the
                    # byte after ".").
                    seek = key[:dot] + b"/"
                    continue
                if rrblob.live_until(blob, now_ms) is not None:
                    found.append(from_reversed_key(key))
                seek = key + b"\x00"     # the next key (keys never hold 0x00)
        return found

    def rrsig_at(self, key: bytes) -> bytes | None:
        """The stored RRSIG record of the name with key ``key``, or None."""
        with self._reading() as tables:
            return _copy(tables.rrsig(key))

    def packed_txt(self, name: str) -> bytes | None:
        return self.packed_txt_at(inputs.owner_key(name))

    def has_descendants(self, name: str, now: float) -> bool:
        key, now_ms = inputs.owner_key(name), inputs.fast_now_ms(now)
        return self.descendants_live_until(key, now_ms) is not None

    def generation(self) -> int:
        known = self._generation
        if known is None:
            begun = self._writes_begun
            with self._reading() as tables:
                known = meta_int(tables, GENERATION)
            with self._generation_lock:
                if self._keeps_generation and begun == self._writes_begun:
                    self._generation = known
        return known

    def touched_between(self, old: int, new: int) -> set | None:
        """The reversed-label keys of the names generations ``old+1 .. new`` changed, or
        None when the store no longer knows them all (``touched``)."""
        with self._reading() as tables:
            return touched.between(tables, old, new)

    def journal_since(self, generation: int):
        """``(current generation, (deleted, added))``: the net change of the values since
        ``generation`` from the transfer journal (``journal.condense``), read in one
        snapshot; the difference is None when the journal does not reach back."""
        with self._reading() as tables:
            current = meta_int(tables, GENERATION)
            if not 0 <= generation <= current:
                return current, None
            return current, journal.condense(tables.journal_from(generation + 1),
                                             generation, current)

    def meta_get(self, key: str) -> bytes | None:
        self._check_meta_key(key)
        with self._reading() as tables:
            return tables.meta(key)

    def reap_stale_readers(self) -> int:
        return 0

    @staticmethod
    def _logged(tables: Tables, position: Cursor) -> Change | None:
        vhash = bytes.fromhex(position.value_hash)
        entry = tables.entry(reversed_key(position.name), vhash)
        if entry is None or entry.ts_ms != position.ts_ms:
            return None
        return to_change(position.name, vhash, entry)

    @staticmethod
    def _triple(item) -> tuple:
        try:
            name, value, expiry = item
        except (TypeError, ValueError):
            raise StoreError("put_many items are (name, value, expiry)") from None
        return name, value, expiry

    @staticmethod
    def _check_cursor(cursor) -> Cursor:
        try:
            ts_ms, name, value_hash = cursor
        except (TypeError, ValueError):
            raise StoreError("a cursor is (ts_ms, name, value_hash)") from None
        if (isinstance(ts_ms, bool) or not isinstance(ts_ms, int)
                or not isinstance(name, str) or not isinstance(value_hash, str)):
            raise StoreError("a cursor is (ts_ms, name, value_hash)")
        if "\x00" in name or "\x00" in value_hash:
            raise StoreError("invalid cursor")
        return Cursor(ts_ms, name, value_hash)

    @staticmethod
    def _check_meta_key(key) -> None:
        if not isinstance(key, str) or not key or len(key.encode("utf-8", "replace")) > 400:
            raise StoreError("meta keys are non-empty strings of at most 400 bytes")
