"""The RecordStore protocol that MemoryStore and LmdbStore implement (docs/decisions.md §3).

A record is one ``(name, value)`` pair with an expiry. A name holds a set of values: writing
an identical value refreshes its expiry (the maximum wins). Names are canonical (see
``dmfdns.proto.names``); values are ASCII text. Deletes leave tombstones that replicate.
Times are unix seconds (float) passed in by the caller; nothing here reads a clock.
"""

from dataclasses import dataclass
from typing import Iterable, NamedTuple, Protocol


class StoreError(Exception):
    """A write the store refuses; the message is safe to show to a client."""


class StoreFull(StoreError):
    """The LMDB map is full: writes are refused, reads go on."""


@dataclass(frozen=True)
class Value:
    """One live value of a name."""

    value: str
    expiry: float


class Cursor(NamedTuple):
    """A position in a node's change log, the reference's ``ts:name:hash`` digest cursor.

    Log entries are ordered by this triple (names and hashes compare as strings, as the
    reference's SQLite does); a page holds the entries strictly after the cursor.
    ``Cursor()`` is the start of the log. Text form: ``dmfdns.store.changelog``.
    """

    ts_ms: int = 0
    name: str = ""
    value_hash: str = ""


@dataclass(frozen=True)
class Change:
    """One entry of the change log that peers page through.

    ``ts_ms`` is the log position: milliseconds, never decreasing, unique together with
    ``(name, value_hash)``. ``deleted`` marks a tombstone; ``origin`` is the node id that
    made the change (ties between concurrent events at the same ``ts_ms`` break on it).

    Added for replication: ``written_ms`` is the write time of the event that decides the
    ``(name, value)`` (the last-writer-wins clock, kept as the change travels between
    nodes, while ``ts_ms`` is each node's own log position). ``None`` means "unknown",
    and ``ts_ms`` stands in for it (a ``dnsmesh`` peer's digest ``ts``).
    """

    ts_ms: int
    name: str
    value_hash: str
    value: str
    expiry: float
    deleted: bool = False
    origin: str = ""
    written_ms: int | None = None

    @property
    def cursor(self) -> Cursor:
        """The log position of this entry; pass it back to continue after it."""
        return Cursor(self.ts_ms, self.name, self.value_hash)

    @property
    def version(self) -> tuple[int, str, bool]:
        """The merge order: the later write wins, then the larger origin node id, then a
        tombstone over a value (only reachable by one node reusing its own clock)."""
        written = self.ts_ms if self.written_ms is None else self.written_ms
        return (written, self.origin, self.deleted)


@dataclass(frozen=True)
class ChangesPage:
    """One page of ``changes_after``: the entries, whether more are visible after them,
    and the cursor to ask from next (the input cursor when nothing was scanned)."""

    changes: tuple[Change, ...]
    has_more: bool
    next_cursor: Cursor


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply_remote_many`` did: how many changes altered the store, and the ones it
    refused with the reason (a bad name, value, hash or time), so a sync worker counts and
    skips them instead of stalling."""

    changed: int
    rejected: tuple[tuple[Change, str], ...] = ()


@dataclass(frozen=True)
class StoreStats:
    """Counts include expired entries until ``sweep`` removes them. ``tombstones`` (added)
    counts deleted ``(name, value)`` pairs still replicating. MemoryStore reports 0 bytes."""

    names: int
    values: int
    map_used_bytes: int
    map_size_bytes: int
    tombstones: int = 0


class RecordStore(Protocol):
    node_id: str
    """This node's id: the ``origin`` of its own changes (added)."""

    def put(self, name: str, value: str, *, expiry: float, now: float) -> bool:
        """Add ``value`` to ``name`` (or refresh its expiry); True if anything changed.
        Durable before it returns."""

    def put_many(self, items: Iterable[tuple[str, str, float]], *, now: float) -> int:
        """``(name, value, expiry)`` items in one transaction; the number changed."""

    def delete(self, name: str, value: str | None = None, *, now: float) -> int:
        """Tombstone one value, or every value when ``value`` is None; the number removed."""

    def write_many(self, ops: Iterable[tuple], *, now: float) -> list[int]:
        """Mixed ``("put", name, value, expiry)`` and ``("delete", name, value or None)``
        ops in one transaction, in order (added for the write service: a DNS UPDATE is
        all or nothing); each op's count of values changed. A bad op raises StoreError
        before anything is written."""

    def get(self, name: str, now: float) -> list[Value]:
        """The live values of ``name`` in insertion order (empty if none)."""

    def packed_txt(self, name: str) -> bytes | None:
        """The pre-packed TXT blob of ``name`` (``dmfdns.dns.rrblob``), expired entries
        included; None when the name holds nothing. The DNS hot path reads only this."""

    def has_descendants(self, name: str, now: float) -> bool:
        """True if some name strictly below ``name`` holds a live value (empty
        non-terminal, RFC 8020)."""

    def sweep(self, now: float, limit: int, *, drain: bool = True) -> int:
        """Remove up to ``limit`` expired values and tombstones; the number removed.
        ``drain``: the write may use the room a size-capped store keeps for removals."""

    def generation(self) -> int:
        """A counter that grows with every committed change (drives SOA serials and the DNS
        answer cache). The writing handle keeps it in memory (no read transaction)."""

    def touched_between(self, old: int, new: int) -> set | None:
        """The reversed-label keys of the names generations ``old+1 .. new`` changed, or
        None if the store no longer knows them all (the DNS answer caches then empty)."""

    def meta_get(self, key: str) -> bytes | None: ...

    def meta_set(self, key: str, value: bytes) -> None:
        """Durable like ``put``. Keys starting with ``store:`` belong to the store itself
        and are refused."""

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...

    # Added for replication (the sync worker and the HTTP sync endpoints).

    def changes_after(self, cursor: Cursor, limit: int, *, now: float,
                      tombstones: bool = True) -> ChangesPage:
        """Up to ``limit`` log entries strictly after ``cursor`` in log order, skipping
        expired ones (and tombstones when ``tombstones`` is False, for ``dnsmesh`` peers).
        Only entries at least the store's stable horizon old (``ts_ms <= now_ms -
        horizon_ms``) are visible, so a cursor never passes a later commit."""

    def changes_for(self, name: str, now: float) -> list[Change]:
        """The current log entry of every unexpired value of ``name``, tombstones
        included, in insertion order: what a dmfdns peer pulls and diffs against."""

    def apply_remote(self, change: Change, now: float) -> bool:
        """Merge a peer's change (per ``(name, value)`` the larger ``Change.version`` wins;
        expiry merges as the maximum); True if the store changed. Already-expired changes
        are ignored; a bad name, value, hash or a write time more than 60 s ahead of
        ``now`` raises StoreError. Durable before it returns."""

    def apply_remote_many(self, changes: Iterable[Change], now: float,
                          meta: dict | None = None) -> ApplyResult:
        """``apply_remote`` for many changes in one transaction; refused ones are reported,
        not raised. ``meta`` (key -> bytes, as ``meta_set``) is set in the same
        transaction (a sync cursor moves exactly when the changes before it land)."""

    def reap_stale_readers(self) -> int:
        """Clear reader slots left by crashed processes (LMDB); the number cleared."""

    # Added for the DNS fast path, which has parsed the name from the wire already.

    def packed_txt_at(self, key: bytes) -> bytes | None:
        """``packed_txt`` by the name's reversed-label key (``proto.names.reversed_key``);
        the caller has checked the name, so the key is not."""

    def descendants_live_until(self, key: bytes, now_ms: int) -> int | None:
        """``has_descendants`` by key, and for how long its answer holds: None when it is
        False (it stays False as time goes on, until a write), else the last millisecond
        through which it stays True for certain (``engine.FOREVER_MS``: until a write)."""

    # Added for admission (a prekey is verified by the identity stored beside it).

    def names_with_prefix(self, parent: str, label_prefix: str, *, now: float,
                          limit: int) -> list[str]:
        """The names exactly one label below ``parent`` whose leftmost label starts with
        ``label_prefix`` and that hold a live value at ``now``: canonical text, at most
        ``limit`` (1..1000) of them, in ascending byte order of that label.

        "Starts with" is a byte prefix of the lowercased label (``"id-0123"`` matches
        ``id-0123456789abcdef.<parent>``); deeper names (``x.id-0123....<parent>``) and
        ``parent`` itself never match; an empty prefix lists every child. One ordered
        range scan from ``reversed_key(parent) + "." + label_prefix`` on the name table,
        stepping over each child's own subtree, so it reads about one key per child it
        meets (expired, unswept children are read and skipped). A ``parent`` that is not
        a name or a prefix that cannot start a label raises StoreError."""
