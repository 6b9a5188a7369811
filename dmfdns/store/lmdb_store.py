"""LmdbStore: the RecordStore on one LMDB environment (docs/decisions.md §3).

With ``lmdb_tables`` (the tables inside a transaction), ``lmdb_snapshot`` (a zone read in
batches for transfers) and ``lmdb_copy`` (hot backup), the only modules that import
``lmdb``. One environment, five named sub-databases for the
records (see ``layout``), an ``auth`` table for credentials and a ``journal`` table for zone
transfers (``journal``), at the schema version
``migrations`` brings it to when a writable handle opens it; opened with LMDB's full sync
(``sync`` and ``metasync`` on), so a write that returned is on disk (docs/decisions.md
§3.4). Every call runs one short transaction that never leaves this module; reads
return plain Python values.

A full map (``MDB_MAP_FULL``) aborts the write transaction, so nothing is half written;
it surfaces as StoreFull while reads go on. So that a full store can always drain itself,
the last ``reserve`` bytes of the map are kept for writes that only remove (deletes and
sweeps): other writes see a map ``reserve`` bytes smaller (``Environment.set_mapsize``,
which LMDB allows between transactions), and a removing write lifts the limit for its own
transaction. Once it commits, the pages it freed are reused by later writes. A read-only
handle (``readonly=True``), e.g. in a DNS worker process, sees every commit of the writer
from its next read on.
"""

import os
import threading
from contextlib import contextmanager

import lmdb

from . import inputs, migrations
from .api import StoreError, StoreFull, StoreStats
from .batch import SCHEMA, VALUES, meta_int
from .changelog import STABLE_HORIZON_MS
from .engine import TableStore, probe_descendants
from .lmdb_snapshot import LmdbSnapshot
from .lmdb_tables import (
    AUTH_DATABASE, DATABASES, GENERATION_KEY, JOURNAL_DATABASE, MAX_DBS, RRSIG_DATABASE,
    LmdbTables, MigrationTables)

MIN_RESERVE, MAX_RESERVE = 2**20, 64 * 2**20
class LmdbStore(TableStore):
    """A RecordStore in the LMDB environment at directory ``path``.

    ``map_size`` (bytes) is required for a writable handle: it is the hard cap of the
    database (the file is sparse). A read-only handle uses the size the writer set.
    """

    def __init__(self, path, map_size: int | None = None, *, readonly: bool = False,
                 node_id: str = "", horizon_ms: int = STABLE_HORIZON_MS,
                 max_readers: int = 126, journal_limit: int = 0):
        super().__init__(node_id, horizon_ms, journal_limit)
        if not readonly and (not isinstance(map_size, int) or map_size <= 0):
            raise StoreError("LmdbStore needs an explicit map_size in bytes")
        self._path = os.fspath(path)
        self._readonly = readonly
        self._snapshots = 0           # open zone_snapshot read transactions
        self._map_size = map_size or 0
        self._write_lock = threading.Lock()
        self.reserve = 0 if readonly else drain_reserve(map_size)
        self._keeps_generation = not readonly    # a writer elsewhere bumps it
        try:
            self._env = lmdb.open(self._path,
                                  map_size=0 if readonly else map_size - self.reserve,
                                  readonly=readonly, create=not readonly, subdir=True,
                                  max_dbs=MAX_DBS, max_readers=max_readers, sync=True,
                                  metasync=True, readahead=False, lock=True)
        except lmdb.Error as error:
            raise StoreError(f"cannot open store at {self._path}: {error}") from None
        try:
            self._dbs = self._open_databases()
        except BaseException:
            self._env.close()
            raise

    def _open_databases(self):
        """The record tables; a writable handle first brings the schema to the current
        version (``migrations``), a read-only one needs it there already."""
        try:
            dbs = tuple(self._env.open_db(n, create=not self._readonly) for n in DATABASES)
        except lmdb.Error as error:
            raise StoreError(f"no dmfdns store at {self._path}: {error}") from None
        self._dbs = dbs
        self._auth_db = self._journal_db = self._rrsig_db = None
        self.migrated = () if self._readonly else self._migrate()
        with self._reading() as tables:
            found = migrations.parse_version(tables.meta(SCHEMA))
        migrations.check_readable(found, self._path)
        self._auth_db = self._versioned_table(AUTH_DATABASE)
        self._journal_db = self._versioned_table(JOURNAL_DATABASE)
        self._rrsig_db = self._versioned_table(RRSIG_DATABASE)
        return dbs

    def _versioned_table(self, name: bytes):
        """A table a migration created (``migrations``)."""
        try:
            return self._env.open_db(name, create=False)
        except lmdb.Error as error:
            raise StoreError(f"the store at {self._path} has no {name.decode()} table: "
                             f"{error}") from None

    def _migrate(self) -> tuple:
        """Run the pending migrations in one write transaction; what ran, in order."""
        txn = self._begin(write=True)
        try:
            tables = MigrationTables(self._env, txn, dict(zip(DATABASES, self._dbs)))
            found = migrations.parse_version(tables.get("meta", SCHEMA.encode("ascii")))
            ran = migrations.run(tables, found, self._path)
            txn.commit()
            return ran
        except lmdb.Error as error:
            txn.abort()
            raise StoreError(f"migrating the store at {self._path} failed: {error}") \
                from None
        except BaseException:
            txn.abort()
            raise

    # transactions

    def _begin(self, write=False):
        try:
            return self._env.begin(write=write)
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)   # another process grew the map: adopt its size
            return self._env.begin(write=write)
        except lmdb.Error as error:
            raise StoreError(f"store unavailable: {error}") from None

    @contextmanager
    def _reading(self):
        txn = self._begin()
        try:
            yield LmdbTables(txn, self._dbs, self._auth_db, self._journal_db,
                              self._rrsig_db)
        except lmdb.Error as error:
            raise StoreError(f"store read failed: {error}") from None
        finally:
            txn.abort()

    @contextmanager
    def _writing(self, drain: bool = False):
        if self._readonly:
            raise StoreError("store is open read-only")
        # One write at a time in this process, also across threads (group commits run in
        # a thread): a drain resizes the map, which must not happen under another write.
        with self._write_lock:
            with self._writing_locked(drain) as tables:
                yield tables

    @contextmanager
    def _writing_locked(self, drain: bool):
        if drain and self.reserve and not self._snapshots:
            # Resizing the map invalidates every open transaction of this process, so
            # while a zone transfer reads a snapshot a removal stays within the limit.
            self._set_limit(self._map_size)
            try:
                with self._transaction() as tables:
                    yield tables
            finally:
                self._set_limit(self._map_size - self.reserve)
        else:
            with self._transaction() as tables:
                yield tables

    def _set_limit(self, size: int) -> None:
        """LMDB keeps at least the size already used, so lowering it again after a drain
        cannot cut into committed data."""
        try:
            self._env.set_mapsize(size)
        except lmdb.Error as error:
            raise StoreError(f"store unavailable: {error}") from None

    @contextmanager
    def _transaction(self):
        txn = self._begin(write=True)
        try:
            yield LmdbTables(txn, self._dbs, self._auth_db, self._journal_db,
                              self._rrsig_db)
            txn.commit()
        except lmdb.MapFullError:
            txn.abort()
            raise StoreFull(self._full_message()) from None
        except lmdb.Error as error:
            txn.abort()
            if "No space left" in str(error):
                raise StoreFull(f"store is full: the disk has no space left ({error}); "
                                "writes are refused, reads go on") from None
            raise StoreError(f"store write failed: {error}") from None
        except BaseException:
            txn.abort()
            raise

    def _full_message(self) -> str:
        return (f"store is full: the LMDB map of {self._map_size} bytes at {self._path} "
                f"has no room; writes are refused, reads go on. The sweeper and deletes "
                f"use the {self.reserve} bytes kept for them and free room as records "
                "expire; if writes stay refused, raise map_size")

    # the DNS hot path: one short read transaction each

    def generation(self) -> int:
        """A read-only handle (a DNS worker) reads the counter on every call, so it takes
        the one-``get`` road (about a quarter of the generic read)."""
        if self._keeps_generation:
            return super().generation()
        txn = self._begin()
        try:
            raw = txn.get(GENERATION_KEY, db=self._dbs[4])
        except lmdb.Error as error:
            raise StoreError(f"store read failed: {error}") from None
        finally:
            txn.abort()
        return int(raw) if raw else 0

    def packed_txt_at(self, key: bytes) -> bytes | None:
        """The blob of the name with reversed-label key ``key`` (unchecked), or None. The
        DNS fast path's one read: the transaction is begun inline, and ``_begin`` (which
        adopts a map another process grew, or says why not) runs only when that fails."""
        try:
            txn = self._env.begin()
        except lmdb.Error:
            txn = self._begin()
        try:
            return txn.get(key, db=self._dbs[1])
        except lmdb.Error as error:
            raise StoreError(f"store read failed: {error}") from None
        finally:
            txn.abort()

    def signed_txt_at(self, key: bytes) -> tuple:
        """``(blob, stored RRSIG record)`` of the name with key ``key`` from one read
        transaction (the signed zone's fast path, ``dns.rrsig_store``)."""
        txn = self._begin()
        try:
            return txn.get(key, db=self._dbs[1]), txn.get(key, db=self._rrsig_db)
        except lmdb.Error as error:
            raise StoreError(f"store read failed: {error}") from None
        finally:
            txn.abort()

    def descendants_live_until(self, key: bytes, now_ms: int) -> int | None:
        """``has_descendants`` by key, with how long its answer holds (``engine``)."""
        prefix = key + b"."
        txn = self._begin()
        try:
            scan = txn.cursor(self._dbs[1])

            def below():
                if not scan.set_range(prefix):
                    return
                while scan.key().startswith(prefix):
                    yield scan.value()
                    if not scan.next():
                        return
            return probe_descendants(below(), now_ms)
        except lmdb.Error as error:
            raise StoreError(f"store read failed: {error}") from None
        finally:
            txn.abort()

    # zone transfers

    def zone_snapshot(self, origin: str) -> "LmdbSnapshot":
        """The present values (tombstones skipped, expiry ignored: ``journal``) at and
        below ``origin``, read in batches from one read transaction, so a transfer sees
        one generation while writes go on. Close it when done."""
        self._snapshots += 1
        try:
            return LmdbSnapshot(self._begin(), self._dbs, inputs.owner_key(origin),
                                self._snapshot_closed)
        except BaseException:
            self._snapshots -= 1
            raise

    def _snapshot_closed(self) -> None:
        self._snapshots -= 1

    # maintenance

    def stats(self) -> StoreStats:
        with self._reading() as tables:
            values = meta_int(tables, VALUES)
            total = tables.count("records")
            names = tables.count("names")
        info, stat = self._env.info(), self._env.stat()
        return StoreStats(names=names, values=values,
                          map_used_bytes=(info["last_pgno"] + 1) * stat["psize"],
                          map_size_bytes=self._map_size or info["map_size"],
                          tombstones=total - values)

    def reap_stale_readers(self) -> int:
        try:
            return self._env.reader_check()
        except lmdb.Error as error:
            raise StoreError(f"reader check failed: {error}") from None

    def close(self) -> None:
        self._env.close()
        self._generation = None


def drain_reserve(map_size: int) -> int:
    """Bytes of the map kept for deletes and sweeps: 1/16 of it, at least 1 MiB and at most
    64 MiB, never more than a quarter (enough for a sweep batch of 1,000 records to rewrite
    the pages it touches)."""
    return min(max(map_size // 16, MIN_RESERVE), MAX_RESERVE, map_size // 4)
