"""MemoryStore: the RecordStore in plain Python containers, the reference for unit tests.

Same rules as LmdbStore (they share ``engine.TableStore``); the ordered tables are sorted
lists kept with ``bisect``, which is fine for test-sized data. Nothing survives the process.
"""

from bisect import bisect_left, bisect_right, insort
from contextlib import contextmanager
from typing import Iterator

from . import inputs
from .api import Cursor, StoreError, StoreStats
from .batch import GENERATION, VALUES, meta_int
from .engine import TableStore, probe_descendants
from .changelog import STABLE_HORIZON_MS
from .merge import Entry


def _discard(items: list, item) -> None:
    index = bisect_left(items, item)
    if index < len(items) and items[index] == item:
        del items[index]


def _below(rkey: bytes, zlen: int) -> tuple:
    """The labels of a name below its zone (whose key is ``zlen`` bytes), leftmost first."""
    below = rkey[zlen + 1:]
    return tuple(below.split(b".")[::-1]) if below else ()


def _at_or_below(rkey: bytes, zkey: bytes) -> bool:
    return rkey == zkey or rkey.startswith(zkey + b".")


class MemorySnapshot:
    """MemoryStore's ``zone_snapshot``: the same interface as LmdbStore's."""

    def __init__(self, generation: int, rows: list, zlen: int):
        self.generation = generation
        self._zlen = zlen
        self._rows, self._at = rows, 0

    def batch(self, limit: int) -> list:
        rows = self._rows[self._at:self._at + limit]
        self._at += len(rows)
        return [(_below(rkey, self._zlen), value) for rkey, _, value in rows]

    @property
    def done(self) -> bool:
        return self._at >= len(self._rows)

    def close(self) -> None:
        self._rows, self._at = [], 0


class _MemoryTables:
    def __init__(self):
        self.records: dict[bytes, dict[bytes, Entry]] = {}
        self.blobs: dict[bytes, bytes] = {}
        self.blob_keys: list[bytes] = []
        self.log: list[Cursor] = []
        self.expiries: list[tuple[int, bytes, bytes]] = []
        self.meta_values: dict[str, bytes] = {}
        self.auth: dict[bytes, bytes] = {}
        self.journal: dict[int, bytes] = {}       # generations only grow: key order
        self.rrsigs: dict[bytes, bytes] = {}

    def entry(self, rkey, vhash):
        return self.records.get(rkey, {}).get(vhash)

    def entries(self, rkey):
        return list(self.records.get(rkey, {}).items())

    def set_entry(self, rkey, vhash, entry):
        self.records.setdefault(rkey, {})[vhash] = entry

    def drop_entry(self, rkey, vhash):
        values = self.records.get(rkey, {})
        values.pop(vhash, None)
        if not values:
            self.records.pop(rkey, None)

    def set_blob(self, rkey, blob):
        if blob is None:
            if self.blobs.pop(rkey, None) is not None:
                _discard(self.blob_keys, rkey)
        else:
            if rkey not in self.blobs:
                insort(self.blob_keys, rkey)
            self.blobs[rkey] = blob

    def blob_at_or_after(self, rkey):
        index = bisect_left(self.blob_keys, rkey)
        if index == len(self.blob_keys):
            return None
        key = self.blob_keys[index]
        return key, self.blobs[key]

    def rrsig(self, rkey):
        return self.rrsigs.get(rkey)

    def set_rrsig(self, rkey, record):
        if record is None:
            self.rrsigs.pop(rkey, None)
        else:
            self.rrsigs[rkey] = record

    def log_add(self, position):
        insort(self.log, position)

    def log_drop(self, position):
        _discard(self.log, position)

    def log_after(self, cursor) -> Iterator[Cursor]:
        index = bisect_right(self.log, cursor)
        while index < len(self.log):
            yield self.log[index]
            index += 1

    def expiry_add(self, expiry_ms, rkey, vhash):
        insort(self.expiries, (expiry_ms, rkey, vhash))

    def expiry_drop(self, expiry_ms, rkey, vhash):
        _discard(self.expiries, (expiry_ms, rkey, vhash))

    def expired(self, now_ms, limit):
        end = bisect_left(self.expiries, (now_ms + 1,))
        return self.expiries[:min(end, limit)]

    def meta(self, key):
        return self.meta_values.get(key)

    def set_meta(self, key, value):
        self.meta_values[key] = value

    def auth_get(self, key):
        return self.auth.get(key)

    def auth_scan(self, prefix):
        return sorted((k, v) for k, v in self.auth.items() if k.startswith(prefix))

    def auth_set(self, key, value):
        if value is None:
            self.auth.pop(key, None)
        else:
            self.auth[key] = value

    def journal_add(self, generation, raw):
        self.journal[generation] = raw

    def journal_first(self):
        return next(iter(self.journal.items()), None)

    def journal_drop(self, generation):
        self.journal.pop(generation, None)

    def journal_from(self, generation):
        return [(g, raw) for g, raw in self.journal.items() if g >= generation]


class MemoryStore(TableStore):
    """An in-process RecordStore; ``node_id`` is the origin of this store's own changes."""

    def __init__(self, *, node_id: str = "", horizon_ms: int = STABLE_HORIZON_MS,
                 journal_limit: int = 0):
        super().__init__(node_id, horizon_ms, journal_limit)
        self._tables: _MemoryTables | None = _MemoryTables()

    @contextmanager
    def _writing(self, drain: bool = False):
        yield self._open()

    @contextmanager
    def _reading(self):
        yield self._open()

    def _open(self) -> _MemoryTables:
        if self._tables is None:
            raise StoreError("store is closed")
        return self._tables

    def packed_txt_at(self, key: bytes) -> bytes | None:
        """The blob of the name with reversed-label key ``key`` (unchecked), or None."""
        return self._open().blobs.get(key)

    def signed_txt_at(self, key: bytes) -> tuple:
        """``(blob, stored RRSIG record)`` of the name with key ``key`` (``rrsig_store``)."""
        tables = self._open()
        return tables.blobs.get(key), tables.rrsigs.get(key)

    def descendants_live_until(self, key: bytes, now_ms: int) -> int | None:
        """``has_descendants`` by key, with how long its answer holds (``engine``)."""
        tables, prefix = self._open(), key + b"."
        keys = tables.blob_keys
        index = bisect_left(keys, prefix)

        def below():
            for at in range(index, len(keys)):
                if not keys[at].startswith(prefix):
                    return
                yield tables.blobs[keys[at]]
        return probe_descendants(below(), now_ms)

    def zone_snapshot(self, origin: str) -> "MemorySnapshot":
        """A frozen copy of the present values at and below ``origin`` (see LmdbStore)."""
        tables, zkey = self._open(), inputs.owner_key(origin)
        rows = [(rkey, vhash, entry.value)
                for rkey in sorted(tables.records) if _at_or_below(rkey, zkey)
                for vhash, entry in sorted(tables.records[rkey].items())
                if not entry.deleted]
        return MemorySnapshot(meta_int(tables, GENERATION), rows, len(zkey))

    def stats(self) -> StoreStats:
        tables = self._open()
        values = meta_int(tables, VALUES)
        total = sum(len(v) for v in tables.records.values())
        return StoreStats(names=len(tables.blobs), values=values, map_used_bytes=0,
                          map_size_bytes=0, tombstones=total - values)

    def close(self) -> None:
        self._tables = None
        self._generation = None
