"""A bucketed digest of the whole record set (docs/decisions.md §6.4, Riak's Tictac AAE).

Watermark sync alone cannot tell a node that it holds what its peer holds. Two dmfdns nodes
compare this instead: every live ``(name, value)`` entry, tombstones included, hashes its
name, value hash, version and expiry to 128 bits; a bucket (the first byte of sha256(name),
256 of them) is the XOR of its entries' hashes, and the root the XOR of the buckets. Equal
sets give equal roots, so one small request confirms convergence; unequal roots narrow the
difference to the buckets that differ, whose entries are then listed and diffed.

The index is built by reading the local change log from the start and then kept up to date
by reading the log's tail (every change moves an entry to the tail, so the tail says
everything), so it costs O(changes), not a scan per comparison. XOR makes every update O(1).
Reading is done in **slices** bounded in time: ``refresh`` reads one slice, ``catch_up``
reads slices until the index covers the log, giving the reactor back between them, so
building the index over a million entries never holds up DNS. In a node the slices share
its budget of reactor time per turn with the other sliced work (``dmfdns.slicing``).

Per entry the index keeps only its key (name and raw value hash, as bytes) and one integer
(the 128-bit hash and the expiry), about 200 bytes in all; a bucket listing reads the
entries' other fields from the store. None of these objects is seen by Python's cyclic
garbage collector: bytes and integers are not containers, a dict holding only them is
untracked, and the keys expiring in each second are kept in tuples (untracked once the
collector has seen them once), not lists, so a full collection does not walk a million
pointers (with a list per second, each full collection cost about 40 ms of CPU at a million
entries, against 5-12 ms with tuples: a reactor stall every time one ran). A second's keys
are a tuple of chunks of at most ``CHUNK`` keys, each filed once and never copied: one
tuple per second grown by concatenation was copied whole on every slice (an import files
100,000 records in one second) and each copy was new, so the next young collection walked
its 100,000 pointers too (15-30 ms a time at a million records).

Entries within ``EDGE_MS`` of their expiry are left out on both sides, so two nodes whose
clocks differ a little still agree about what has expired (docs/decisions.md §3.3). Only
entries past the store's stable horizon are in the index, as in the digest.
"""

import hashlib
import heapq
import time
from dataclasses import dataclass

from twisted.internet import defer, task
from twisted.logger import Logger

from ..slicing import Slicer
from ..store.api import Change, Cursor

BUCKETS = 256
EDGE_MS = 10_000
READ_BATCH = 250
SLICE_SECONDS = 0.010
MAX_LIST = 5_000
CHUNK = 2_000           # keys per filed chunk: expiring one is a few ms of work
LIST_STEP = 100
_SEP = b"\x00"
_EXPIRY_BITS = 64
_EXPIRY_MASK = (1 << _EXPIRY_BITS) - 1
log = Logger(namespace="dmfdns.sync")


def bucket_of(name: str) -> int:
    return hashlib.sha256(name.encode("ascii", "replace")).digest()[0]


def bucket_label(bucket: int) -> str:
    return f"{bucket:02x}"


def parse_bucket(text) -> int | None:
    if not isinstance(text, str) or len(text) != 2:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


@dataclass(frozen=True)
class Member:
    """One entry as the bucket listing serves it."""

    name: str
    value_hash: str
    ts_ms: int
    written_ms: int
    origin: str
    deleted: bool
    expiry_ms: int
    digest: int

    def as_entry(self, now_ms: int) -> dict:
        """The extended digest entry the bucket listing serves."""
        return {"name": self.name, "hash": self.value_hash, "ts": self.ts_ms,
                "ttl": max(1, -(-(self.expiry_ms - now_ms) // 1000)),
                "deleted": self.deleted, "written_ms": self.written_ms,
                "origin": self.origin, "expiry_ms": self.expiry_ms}


def member_of(change: Change) -> Member:
    written = change.ts_ms if change.written_ms is None else change.written_ms
    expiry_ms = round(change.expiry * 1000)
    text = (f"{change.name}\n{change.value_hash}\n{int(change.deleted)}\n{written}\n"
            f"{change.origin}\n{expiry_ms}")
    digest = int.from_bytes(hashlib.sha256(text.encode("utf-8", "replace")).digest()[:16],
                            "big")
    return Member(change.name, change.value_hash, change.ts_ms, written, change.origin,
                  change.deleted, expiry_ms, digest)


def entry_key(name: str, value_hash: str) -> bytes:
    """The index key of an entry; byte order is the order of ``(name, hash)``."""
    return name.encode("utf-8", "replace") + _SEP + bytes.fromhex(value_hash)


def split_key(key: bytes) -> tuple[str, str]:
    return key[:-33].decode("utf-8", "replace"), key[-32:].hex()


class FullSetIndex:
    """The bucket hashes of one store, refreshed from its change log in bounded slices:
    within ``slicer``'s shared budget (the node's ``dmfdns.slicing.Slicer``), or without
    one ``slice_seconds`` a slice. ``timer`` (seconds, monotonic) measures a slice; it is
    not the store's clock."""

    def __init__(self, store, *, timer=time.perf_counter, slice_seconds=SLICE_SECONDS,
                 slicer: Slicer | None = None):
        self._store = store
        self._slicer = slicer
        self._timer = slicer.timer if slicer is not None else timer
        self.slice_seconds = slice_seconds
        self._cursor = Cursor()
        self._buckets: list[dict[bytes, int]] = [{} for _ in range(BUCKETS)]
        self._hashes = [0] * BUCKETS
        self._count = 0
        # Expiry second -> the chunks of keys expiring in it (a heap of the seconds beside
        # it): 8 bytes per entry instead of a heap item per entry. Tuples, which the cyclic
        # collector stops walking (see above); a slice's new keys are gathered in
        # ``_adding`` and filed once per slice.
        self._expiring: dict[int, tuple[tuple[bytes, ...], ...]] = {}
        self._adding: dict[int, list[bytes]] = {}
        self._expiry_seconds: list[int] = []
        self._catching_up: defer.Deferred | None = None
        self.caught_up = False
        # False while entries past the expiry edge are still to be dropped (a slice drops
        # what its time allows; ``catch_up`` goes on until both are done).
        self.expired = True
        self.slices = 0

    def refresh(self, now: float) -> bool:
        """Read one slice of the log's new tail and drop entries reaching their expiry
        edge (``expired`` tells whether that is done); True once the index covers the
        whole stable log."""
        now_ms = round(now * 1000)
        until = self._slice_end()
        self.slices += 1
        while True:
            page = self._store.changes_after(self._cursor, READ_BATCH, now=now)
            for change in page.changes:
                self._put(change, now_ms)
            self._cursor = page.next_cursor
            if not page.has_more:
                self.caught_up = True
                break
            if self._timer() >= until:
                self.caught_up = False
                break
        self._file_added()
        self.expired = self._expire(now_ms, until)
        return self.caught_up

    def _slice_end(self) -> float:
        """The end of this slice: the shared budget's, or ``slice_seconds`` from now."""
        if self._slicer is None:
            return self._timer() + self.slice_seconds
        return self._slicer.slice_end()

    def catch_up(self, clock) -> defer.Deferred:
        """Refresh slice by slice, giving ``clock`` (the reactor) a turn between slices,
        until the index covers the stable log; fires with True. Callers share one run."""
        if self._catching_up is None:
            running = defer.ensureDeferred(self._slices(clock))
            if running.called:          # done in one slice
                return running
            self._catching_up = running
            running.addCallback(self._caught_up)
        return _follow(self._catching_up)

    async def _slices(self, clock) -> bool:
        """True once caught up; False (logged) when the store fails on the way."""
        try:
            while not (self.refresh(clock.seconds()) and self.expired):
                if self._slicer is not None:
                    await self._slicer.pause()
                else:
                    await task.deferLater(clock, 0, lambda: None)
        except Exception:
            log.failure("building the full-set index failed; it is tried again")
            return False
        return True

    def _caught_up(self, result):
        self._catching_up = None
        return result

    def _put(self, change: Change, now_ms: int) -> None:
        key = entry_key(change.name, change.value_hash)
        bucket = bucket_of(change.name)
        self._drop(bucket, key)
        member = member_of(change)
        if member.expiry_ms <= now_ms + EDGE_MS:
            return
        self._buckets[bucket][key] = (member.digest << _EXPIRY_BITS) | member.expiry_ms
        self._hashes[bucket] ^= member.digest
        self._count += 1
        self._adding.setdefault(member.expiry_ms // 1000, []).append(key)

    def _file_added(self) -> None:
        """File the keys ``_put`` gathered under their expiry seconds: topping up the
        second's last chunk while it has room (expiries spread over many seconds add a
        few keys to each), else in new chunks, so a filing copies at most ``CHUNK`` keys."""
        for second, added in self._adding.items():
            held = self._expiring.get(second)
            if held is None:
                heapq.heappush(self._expiry_seconds, second)
                held = ()
            keys = tuple(added)
            if held and len(held[-1]) + len(keys) <= CHUNK:
                held, keys = held[:-1], held[-1] + keys
            self._expiring[second] = held + tuple(
                keys[at:at + CHUNK] for at in range(0, len(keys), CHUNK))
        self._adding.clear()

    def _drop(self, bucket: int, key: bytes, expiry_ms: int | None = None) -> None:
        packed = self._buckets[bucket].get(key)
        if packed is None or (expiry_ms is not None and packed & _EXPIRY_MASK != expiry_ms):
            return
        del self._buckets[bucket][key]
        self._hashes[bucket] ^= packed >> _EXPIRY_BITS
        self._count -= 1

    def _expire(self, now_ms: int, until: float) -> bool:
        """Drop the entries reaching the expiry edge, a chunk at a time, until the slice
        ends at ``until`` (at least one chunk: the rest waits for the next slice); True
        when none is left to drop."""
        edge = now_ms + EDGE_MS
        while self._expiry_due(edge):
            second = self._expiry_seconds[0]
            chunks, kept = self._expiring[second], []
            for done, chunk in enumerate(chunks, 1):
                left = self._expire_chunk(chunk, second, edge)
                if left:
                    kept.append(left)
                if done < len(chunks) and self._timer() >= until:
                    self._expiring[second] = tuple(kept) + chunks[done:]
                    return False
            if kept:        # the edge is inside this second: the rest expire later
                self._expiring[second] = tuple(kept)
                return True
            del self._expiring[second]
            heapq.heappop(self._expiry_seconds)
            if self._timer() >= until:
                return not self._expiry_due(edge)
        return True

    def _expiry_due(self, edge: int) -> bool:
        """Whether the earliest filed second has reached the expiry edge."""
        return bool(self._expiry_seconds) and self._expiry_seconds[0] * 1000 <= edge

    def _expire_chunk(self, keys: tuple, second: int, edge: int) -> tuple:
        """Drop the entries of ``keys`` (filed under ``second``) whose expiry reached
        ``edge``; the keys still short of it. A key written again since it was filed
        has moved to another second, or out of the index, and is skipped here."""
        left = []
        for key in keys:
            bucket = bucket_of(split_key(key)[0])
            packed = self._buckets[bucket].get(key)
            if packed is None or (packed & _EXPIRY_MASK) // 1000 != second:
                continue
            if packed & _EXPIRY_MASK <= edge:
                self._drop(bucket, key)
            else:
                left.append(key)
        return tuple(left)

    # --- what is compared ---------------------------------------------------------------

    @property
    def count(self) -> int:
        return self._count

    def root(self) -> str:
        value = 0
        for bucket_hash in self._hashes:
            value ^= bucket_hash
        return f"{value:032x}"

    def buckets(self) -> dict[str, str]:
        """The non-empty buckets: label -> hash."""
        return {bucket_label(b): f"{h:032x}" for b, h in enumerate(self._hashes)
                if self._buckets[b]}

    def summary(self, their_root: str | None = None) -> dict:
        """The summary answer: the root and count, and the buckets unless the asker's
        root already matches (then one small answer confirms convergence)."""
        root = self.root()
        body = {"root": root, "count": self.count}
        if their_root == root:
            body["match"] = True
        else:
            body["buckets"] = self.buckets()
        return body

    def listing(self, bucket: int, after: tuple[str, str] | None, limit: int,
                now_ms: int) -> dict:
        """Up to ``limit`` entries of ``bucket`` after ``(name, hash)``, in that order; each
        as the store holds it now (the index may be a slice behind)."""
        for result in self.listing_steps(bucket, after, limit, now_ms):
            pass
        return result

    def listing_steps(self, bucket: int, after: tuple[str, str] | None, limit: int,
                      now_ms: int):
        """``listing`` in steps: yields None after every ``LIST_STEP`` entries read from
        the store (a caller on the reactor gives it a turn there), then the listing."""
        keys = sorted(self._buckets[bucket])
        if after is not None:
            start = entry_key(*after)
            keys = [key for key in keys if key > start]
        page = keys[:limit]
        records = []
        for first in range(0, len(page), LIST_STEP):
            records += self._entries(page[first:first + LIST_STEP], now_ms)
            yield None
        yield {"bucket": bucket_label(bucket), "records": records,
               "has_more": len(keys) > len(page)}

    def _entries(self, keys: list[bytes], now_ms: int) -> list[dict]:
        found, by_name = [], {}
        for key in keys:
            name, value_hash = split_key(key)
            if name not in by_name:
                by_name[name] = {c.value_hash: c for c in
                                 self._store.changes_for(name, now_ms / 1000)}
            change = by_name[name].get(value_hash)
            if change is not None:
                found.append(member_of(change).as_entry(now_ms))
        return found

    def differing(self, theirs: dict) -> list[int]:
        """Buckets whose hash differs from ``theirs`` (label -> hash, as ``buckets``)."""
        mine = self.buckets()
        labels = set(mine) | set(theirs)
        return sorted(parse_bucket(label) for label in labels
                      if mine.get(label) != theirs.get(label) and parse_bucket(label) is not None)


def _follow(running: defer.Deferred) -> defer.Deferred:
    """A Deferred that fires with ``running``'s result, leaving ``running`` as it was."""
    follower = defer.Deferred()

    def relay(result):
        follower.callback(result)
        return result
    running.addCallback(relay)
    return follower
