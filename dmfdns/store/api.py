"""The RecordStore protocol that MemoryStore and LmdbStore implement (DESIGN.md section 3).

A record is one ``(name, value)`` pair with an expiry. A name holds a set of values: writing
an identical value refreshes its expiry (the maximum wins). Names are canonical (see
``dmfdns.dns.names``); values are ASCII text. Deletes leave tombstones that replicate.
Times are unix seconds (float) passed in by the caller; nothing here reads a clock.
"""

from dataclasses import dataclass
from typing import Iterable, Protocol


class StoreError(Exception):
    """A write the store refuses; the message is safe to show to a client."""


class StoreFull(StoreError):
    """The LMDB map is full: writes are refused, reads go on."""


@dataclass(frozen=True)
class Value:
    """One live value of a name."""

    value: str
    expiry: float


@dataclass(frozen=True)
class Change:
    """One entry of the change log that peers page through.

    ``ts_ms`` is the log position: milliseconds, never decreasing, unique together with
    ``(name, value_hash)``. ``deleted`` marks a tombstone; ``origin`` is the node id that
    made the change (ties between concurrent events at the same ``ts_ms`` break on it).
    """

    ts_ms: int
    name: str
    value_hash: str
    value: str
    expiry: float
    deleted: bool = False
    origin: str = ""


@dataclass(frozen=True)
class StoreStats:
    names: int
    values: int
    map_used_bytes: int
    map_size_bytes: int


class RecordStore(Protocol):
    def put(self, name: str, value: str, *, expiry: float, now: float) -> bool:
        """Add ``value`` to ``name`` (or refresh its expiry); True if anything changed.
        Durable before it returns."""

    def put_many(self, items: Iterable[tuple[str, str, float]], *, now: float) -> int:
        """``(name, value, expiry)`` items in one transaction; the number changed."""

    def delete(self, name: str, value: str | None = None, *, now: float) -> int:
        """Tombstone one value, or every value when ``value`` is None; the number removed."""

    def get(self, name: str, now: float) -> list[Value]:
        """The live values of ``name`` in insertion order (empty if none)."""

    def packed_txt(self, name: str) -> bytes | None:
        """The pre-packed TXT blob of ``name`` (``dmfdns.dns.rrblob``), expired entries
        included; None when the name holds nothing. The DNS hot path reads only this."""

    def has_descendants(self, name: str, now: float) -> bool:
        """True if some name strictly below ``name`` holds a live value (empty
        non-terminal, RFC 8020)."""

    def sweep(self, now: float, limit: int) -> int:
        """Remove up to ``limit`` expired values and tombstones; the number removed."""

    def generation(self) -> int:
        """A counter that grows with every committed change (drives SOA serials)."""

    def meta_get(self, key: str) -> bytes | None: ...

    def meta_set(self, key: str, value: bytes) -> None: ...

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...
