"""The named LMDB tables of a store and the operations on them inside one transaction:
``LmdbTables`` (the ``batch.Tables`` operations the write path and the readers use) and
``MigrationTables`` (what a schema migration may do). Key and value layouts are
``layout``'s and ``journal``'s; transactions are opened and closed by ``lmdb_store``.
"""

from . import journal, layout
from .batch import GENERATION

DATABASES = (b"records", b"names", b"log", b"expiry", b"meta")
GENERATION_KEY = GENERATION.encode("utf-8")
AUTH_DATABASE = b"auth"
JOURNAL_DATABASE = b"journal"
RRSIG_DATABASE = b"rrsigs"
MAX_DBS = 16      # named tables, with room for the ones later schema versions add


class LmdbTables:
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
        return [(key[len(prefix):], layout.decode_entry(raw))
                for key, raw in _prefixed(self._txn.cursor(self._records), prefix)]

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
        return [(bytes(key), bytes(value))
                for key, value in _prefixed(self._txn.cursor(self._auth), prefix)]

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


class MigrationTables:
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


def _prefixed(cursor, prefix: bytes):
    """The (key, value) pairs of ``cursor``'s table whose key starts with ``prefix``."""
    if cursor.set_range(prefix):
        for key, value in cursor:
            if not key.startswith(prefix):
                return
            yield key, value
