"""A bucketed digest of the whole record set (reliability.md section 2.3, Riak's Tictac AAE).

Watermark sync alone cannot tell a node that it holds what its peer holds. Two dmfdns nodes
compare this instead: every live ``(name, value)`` entry, tombstones included, hashes its
name, value hash, version and expiry to 128 bits; a bucket (the first byte of sha256(name),
256 of them) is the XOR of its entries' hashes, and the root the XOR of the buckets. Equal
sets give equal roots, so one small request confirms convergence; unequal roots narrow the
difference to the buckets that differ, whose entries are then listed and diffed.

The index is built once by reading the local change log from the start and then kept up to
date by reading the log's tail (every change moves an entry to the tail, so the tail says
everything), so it costs O(changes), not a scan per comparison. XOR makes every update O(1).
Entries within ``EDGE_MS`` of their expiry are left out on both sides, so two nodes whose
clocks differ a little still agree about what has expired (reliability.md section 2.2).
Only entries past the store's stable horizon are in the index, as in the digest.
"""

import hashlib
import heapq
from dataclasses import dataclass

from ..store.api import Change, Cursor

BUCKETS = 256
EDGE_MS = 10_000
READ_BATCH = 10_000
MAX_READ_PER_REFRESH = 500_000
MAX_LIST = 5_000


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
    """What the index keeps of one entry."""

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


class FullSetIndex:
    """The bucket hashes of one store, refreshed from its change log."""

    def __init__(self, store):
        self._store = store
        self._cursor = Cursor()
        self._members: dict[tuple[str, str], Member] = {}
        self._by_bucket: list[set] = [set() for _ in range(BUCKETS)]
        self._hashes = [0] * BUCKETS
        self._expiries: list[tuple[int, str, str]] = []
        self.caught_up = False

    def refresh(self, now: float) -> bool:
        """Read the log's new tail (bounded per call) and drop entries reaching their
        expiry edge; True once the index covers the whole stable log."""
        now_ms = round(now * 1000)
        read = 0
        while read < MAX_READ_PER_REFRESH:
            page = self._store.changes_after(self._cursor, READ_BATCH, now=now)
            for change in page.changes:
                self._put(member_of(change), now_ms)
            read += len(page.changes)
            self._cursor = page.next_cursor
            if not page.has_more:
                self.caught_up = True
                break
        else:
            self.caught_up = False
        self._expire(now_ms)
        return self.caught_up

    def _put(self, member: Member, now_ms: int) -> None:
        key = (member.name, member.value_hash)
        self._drop(key)
        if member.expiry_ms <= now_ms + EDGE_MS:
            return
        bucket = bucket_of(member.name)
        self._members[key] = member
        self._by_bucket[bucket].add(key)
        self._hashes[bucket] ^= member.digest
        heapq.heappush(self._expiries, (member.expiry_ms, member.name, member.value_hash))

    def _drop(self, key) -> None:
        old = self._members.pop(key, None)
        if old is not None:
            bucket = bucket_of(old.name)
            self._by_bucket[bucket].discard(key)
            self._hashes[bucket] ^= old.digest

    def _expire(self, now_ms: int) -> None:
        edge = now_ms + EDGE_MS
        while self._expiries and self._expiries[0][0] <= edge:
            expiry_ms, name, value_hash = heapq.heappop(self._expiries)
            member = self._members.get((name, value_hash))
            if member is not None and member.expiry_ms == expiry_ms:
                self._drop((name, value_hash))

    # --- what is compared ---------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self._members)

    def root(self) -> str:
        value = 0
        for bucket_hash in self._hashes:
            value ^= bucket_hash
        return f"{value:032x}"

    def buckets(self) -> dict[str, str]:
        """The non-empty buckets: label -> hash."""
        return {bucket_label(b): f"{h:032x}" for b, h in enumerate(self._hashes)
                if self._by_bucket[b]}

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
        """Up to ``limit`` entries of ``bucket`` after ``(name, hash)``, in that order."""
        keys = sorted(self._by_bucket[bucket])
        if after is not None:
            keys = [key for key in keys if key > after]
        page = keys[:limit]
        return {"bucket": bucket_label(bucket),
                "records": [self._members[key].as_entry(now_ms) for key in page],
                "has_more": len(keys) > len(page)}

    def differing(self, theirs: dict) -> list[int]:
        """Buckets whose hash differs from ``theirs`` (label -> hash, as ``buckets``)."""
        mine = self.buckets()
        labels = set(mine) | set(theirs)
        return sorted(parse_bucket(label) for label in labels
                      if mine.get(label) != theirs.get(label) and parse_bucket(label) is not None)
