"""LmdbStore: the RecordStore on one LMDB environment (docs/decisions.md §3).

The only module that imports ``lmdb``. One environment, five named sub-databases for the
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

from . import inputs, journal, layout, migrations
from .api import Cursor, StoreError, StoreFull, StoreStats
from .batch import GENERATION, SCHEMA, VALUES, meta_int
from .changelog import STABLE_HORIZON_MS
from .engine import TableStore, probe_descendants

MIN_RESERVE, MAX_RESERVE = 2**20, 64 * 2**20
_DATABASES = (b"records", b"names", b"log", b"expiry", b"meta")
_GENERATION_KEY = GENERATION.encode("utf-8")
_AUTH_DATABASE = b"auth"
_JOURNAL_DATABASE = b"journal"
_RRSIG_DATABASE = b"rrsigs"
_MAX_DBS = 16      # named tables, with room for the ones later schema versions add


class _LmdbTables:
    """The ``batch.Tables`` operations inside one LMDB transaction."""

    def __init__(self, txn, dbs, auth_db=None, journal_db=None, rrsig_db=None):
        self._txn = txn
        self._records, self._names, self._log, self._expiry, self._meta = dbs
        self._auth = auth_db
        self._journal = journal_db
        self._rrsigs = rrsig_db

    def entry(self, rkey, vhash):
        raw = self._txn.get(layout.record_key(rkey, vhash), db=self._records)
        return None if raw is None else layout.decode_entry(raw)

    def entries(self, rkey):
        prefix = rkey + layout.SEP
        cursor = self._txn.cursor(self._records)
        found = []
        if cursor.set_range(prefix):
            for key, raw in cursor:
                if not key.startswith(prefix):
                    break
                found.append((key[len(prefix):], layout.decode_entry(raw)))
        return found

    def set_entry(self, rkey, vhash, entry):
        self._txn.put(layout.record_key(rkey, vhash), layout.encode_entry(entry),
                      db=self._records)

    def drop_entry(self, rkey, vhash):
        self._txn.delete(layout.record_key(rkey, vhash), db=self._records)

    def set_blob(self, rkey, blob):
        if blob is None:
            self._txn.delete(rkey, db=self._names)
        else:
            self._txn.put(rkey, blob, db=self._names)

    def blob_at_or_after(self, rkey):
        scan = self._txn.cursor(self._names)
        if not scan.set_range(rkey):
            return None
        return scan.key(), scan.value()

    def rrsig(self, rkey):
        return None if self._rrsigs is None else self._txn.get(rkey, db=self._rrsigs)

    def set_rrsig(self, rkey, record):
        if self._rrsigs is None:
            return
        if record is None:
            self._txn.delete(rkey, db=self._rrsigs)
        else:
            self._txn.put(rkey, record, db=self._rrsigs)

    def log_add(self, position):
        self._txn.put(layout.log_key(position), b"", db=self._log)

    def log_drop(self, position):
        self._txn.delete(layout.log_key(position), db=self._log)

    def log_after(self, cursor):
        seek = layout.log_seek_key(cursor)
        if seek is None:
            return
        scan = self._txn.cursor(self._log)
        if not scan.set_range(seek):
            return
        if scan.key() == seek and not scan.next():
            return
        for key in scan.iternext(keys=True, values=False):
            yield layout.decode_log_key(key)

    def expiry_add(self, expiry_ms, rkey, vhash):
        self._txn.put(layout.expiry_key(expiry_ms, rkey, vhash), b"", db=self._expiry)

    def expiry_drop(self, expiry_ms, rkey, vhash):
        self._txn.delete(layout.expiry_key(expiry_ms, rkey, vhash), db=self._expiry)

    def expired(self, now_ms, limit):
        bound = layout.expiry_bound(now_ms)
        scan = self._txn.cursor(self._expiry)
        found = []
        if scan.first():
            for key in scan.iternext(keys=True, values=False):
                if key >= bound or len(found) == limit:
                    break
                found.append(layout.decode_expiry_key(key))
        return found

    def meta(self, key):
        return self._txn.get(key.encode("utf-8"), db=self._meta)

    def set_meta(self, key, value):
        self._txn.put(key.encode("utf-8"), value, db=self._meta)

    def auth_get(self, key):
        return None if self._auth is None else self._txn.get(key, db=self._auth)

    def auth_scan(self, prefix):
        if self._auth is None:
            return []
        scan = self._txn.cursor(self._auth)
        found = []
        if scan.set_range(prefix):
            for key, value in scan:
                if not key.startswith(prefix):
                    break
                found.append((bytes(key), bytes(value)))
        return found

    def auth_set(self, key, value):
        if value is None:
            self._txn.delete(key, db=self._auth)
        else:
            self._txn.put(key, value, db=self._auth)

    def journal_add(self, generation, raw):
        self._txn.put(journal.GENERATION_KEY.pack(generation), raw, db=self._journal)

    def journal_first(self):
        scan = self._txn.cursor(self._journal)
        if not scan.first():
            return None
        return journal.GENERATION_KEY.unpack(scan.key())[0], scan.value()

    def journal_drop(self, generation):
        self._txn.delete(journal.GENERATION_KEY.pack(generation), db=self._journal)

    def journal_from(self, generation):
        scan = self._txn.cursor(self._journal)
        if not scan.set_range(journal.GENERATION_KEY.pack(generation)):
            return
        for key, raw in scan:
            yield journal.GENERATION_KEY.unpack(key)[0], raw

    def count(self, db_name: str) -> int:
        db = {"records": self._records, "names": self._names}[db_name]
        return self._txn.stat(db)["entries"]


class _MigrationTables:
    """``migrations.MigrationTables`` inside one LMDB write transaction."""

    def __init__(self, env, txn, dbs: dict):
        self._env, self._txn, self._dbs = env, txn, dbs

    def _db(self, table: str):
        db = self._dbs.get(table.encode("ascii"))
        if db is None:     # a table an earlier migration created
            db = self._env.open_db(table.encode("ascii"), txn=self._txn, create=False)
            self._dbs[table.encode("ascii")] = db
        return db

    def create_table(self, name: str) -> None:
        self._dbs[name.encode("ascii")] = self._env.open_db(name.encode("ascii"),
                                                            txn=self._txn, create=True)

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._db(table))

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._db(table))

    def delete(self, table: str, key: bytes) -> None:
        self._txn.delete(key, db=self._db(table))

    def scan(self, table: str, prefix: bytes = b""):
        cursor = self._txn.cursor(self._db(table))
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not key.startswith(prefix):
                    return
                yield bytes(key), bytes(value)


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
                                  max_dbs=_MAX_DBS, max_readers=max_readers, sync=True,
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
            dbs = tuple(self._env.open_db(n, create=not self._readonly) for n in _DATABASES)
        except lmdb.Error as error:
            raise StoreError(f"no dmfdns store at {self._path}: {error}") from None
        self._dbs = dbs
        self._auth_db = self._journal_db = self._rrsig_db = None
        self.migrated = () if self._readonly else self._migrate()
        with self._reading() as tables:
            found = migrations.parse_version(tables.meta(SCHEMA))
        migrations.check_readable(found, self._path)
        self._auth_db = self._versioned_table(_AUTH_DATABASE)
        self._journal_db = self._versioned_table(_JOURNAL_DATABASE)
        self._rrsig_db = self._versioned_table(_RRSIG_DATABASE)
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
            tables = _MigrationTables(self._env, txn, dict(zip(_DATABASES, self._dbs)))
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
            yield _LmdbTables(txn, self._dbs, self._auth_db, self._journal_db,
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
            yield _LmdbTables(txn, self._dbs, self._auth_db, self._journal_db,
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
            raw = txn.get(_GENERATION_KEY, db=self._dbs[4])
        except lmdb.Error as error:
            raise StoreError(f"store read failed: {error}") from None
        finally:
            txn.abort()
        return int(raw) if raw else 0

    def packed_txt_at(self, key: bytes) -> bytes | None:
        """The blob of the name with reversed-label key ``key`` (unchecked), or None."""
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


def copy_environment(path, dest) -> int:
    """Write a consistent, compacted copy of the store at ``path`` into the new, empty
    directory ``dest`` (``dest/data.mdb``, flushed to disk); the copy's schema version.

    The copy runs in one read transaction (``mdb_env_copy2`` with ``MDB_CP_COMPACT``) of a
    read-only handle, so it is a snapshot of one commit and works while the node (another
    process) writes: it does not take the node's lock and never blocks the writer. It
    copies whatever schema version it finds (a backup before an upgrade is the point)."""
    try:
        env = lmdb.open(os.fspath(path), readonly=True, max_dbs=_MAX_DBS, lock=True,
                        subdir=True, create=False)
    except lmdb.Error as error:
        raise StoreError(f"cannot open the store at {path}: {error}") from None
    try:
        with env.begin() as txn:
            meta = env.open_db(b"meta", txn=txn, create=False)
            found = migrations.parse_version(txn.get(SCHEMA.encode("ascii"), db=meta))
        if found is None:
            raise StoreError(f"{path} is not a dmfdns store (no schema version)")
        env.copy(os.fspath(dest), compact=True)
    except lmdb.Error as error:
        raise StoreError(f"copying the store at {path} failed: {error}") from None
    finally:
        env.close()
    _flush(os.path.join(os.fspath(dest), "data.mdb"))
    _flush(os.fspath(dest))
    return found


def _flush(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LmdbSnapshot:
    """One read transaction walking the records table from a zone's key (``batch``)."""

    def __init__(self, txn, dbs, zkey: bytes, on_close=None):
        self._txn = txn
        self._on_close = on_close
        try:
            self.generation = meta_int(_LmdbTables(txn, dbs), GENERATION)
            self._scan = txn.cursor(dbs[0])
            self._more = self._scan.set_range(zkey)
        except lmdb.Error as error:
            txn.abort()
            raise StoreError(f"store read failed: {error}") from None
        self._zkey = zkey

    def batch(self, limit: int) -> list:
        """The next ``(labels, value_bytes)`` pairs, ``labels`` the owner's labels below
        the zone apex, leftmost first (``()`` at the apex): at most ``limit`` records are
        read, tombstones included (skipped), so it may come back short or empty before
        ``done``."""
        found, scan, zkey, read = [], self._scan, self._zkey, 0
        start, sep, present = len(self._zkey) + 1, layout.SEP, layout.present_value
        try:
            while self._more and read < limit:
                key = scan.key()
                if not key.startswith(zkey) or key[len(zkey)] not in (0, 0x2E):
                    self._more = False
                    break
                read += 1
                value = present(scan.value())
                if value is not None:
                    below = key[start:key.index(sep)]
                    found.append((tuple(below.split(b".")[::-1]) if below else (), value))
                self._more = scan.next()
        except lmdb.Error as error:
            self.close()
            raise StoreError(f"store read failed: {error}") from None
        return found

    @property
    def done(self) -> bool:
        return not self._more

    def close(self) -> None:
        if self._txn is not None:
            self._more = False
            try:
                self._txn.abort()
            except lmdb.Error:
                pass
            self._txn = None
            if self._on_close is not None:
                self._on_close()
