"""A zone's records read in batches from one LMDB read transaction: the consistent view of
one serial that a zone transfer streams (``LmdbStore.zone_snapshot``)."""

import lmdb

from . import layout
from .api import StoreError
from .batch import GENERATION, meta_int
from .lmdb_tables import LmdbTables


class LmdbSnapshot:
    """One read transaction walking the records table from a zone's key (``batch``)."""

    def __init__(self, txn, dbs, zkey: bytes, on_close=None):
        self._txn = txn
        self._on_close = on_close
        try:
            self.generation = meta_int(LmdbTables(txn, dbs), GENERATION)
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
