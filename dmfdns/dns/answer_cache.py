"""The answer cache: lean-path responses kept for exactly as long as they stay
byte-identical to what the lean path would build again.

The key is the query after its 2-byte ID, so everything that shapes the response is in it:
the question as sent (0x20 case), the flags (RD, CD), the OPT record (payload, DO). The
value is the response after its ID and the conditions under which it is still exact:

* the store **generation**: every commit bumps it (SOA serials follow it too). When the
  cache sees a new one it drops the answers for the names the commits since touched (the
  store keeps them per generation: ``store/touched.py``) and every negative answer (their
  SOA serial changed), and keeps the rest, which no write changed; if the store cannot
  tell what changed, it empties. The generation is an in-process counter of the writing
  store (``engine``), so checking it costs no LMDB transaction;
* the **time window** ``[built, until]`` over which its bytes do not change: the lean path
  says until when (``until_ms``): a positive answer until its TTL would start counting down
  (served TTL = min(configured, remaining lifetime)), or, in a record's last
  ``answer_ttl`` seconds, until the end of the current whole second of TTL; a negative one
  until the live data that made the name exist expires (NXDOMAIN: until a write). The
  window starts at the build time because a clock that steps back could bring an expired
  value back to life;
* the **max_udp** of the transport it was built for (the size limit may differ).

It is bounded by entries and by bytes (key + response + ``ENTRY_OVERHEAD``, about what a
cached entry costs in CPython), evicts the least recently used entry in O(1)
(``OrderedDict``), and counts its hits, misses, evictions, entries and bytes in the DNS
counters for the metrics collector.

Once it is full, an answer is admitted only on its second miss among the last
``max_entries // 4`` declined ones (a doorkeeper, as in TinyLFU): when the names asked are
many more than the cache holds (a million stored names asked uniformly), most answers
would be evicted before their next use, and storing each one (with its eviction) costs
about as much as building it again. Declining them keeps a miss at the cost of the lean
path alone; answers asked again soon still get in, so a hot set fills the cache as before.
The doorkeeper holds only the keys' hashes (a false match admits an answer: harmless).

A cache of more than ``SHARD_ENTRIES`` entries is split by the hash of the key into up to
``MAX_SHARDS`` shards, each with its own share of the bounds, LRU order and doorkeeper, and
its name index likewise by the hash of the name: no table grows past a few tens of
thousands of entries. A cache sized for a million names in one table held the reactor for
about 340 ms each time that table doubled (CPython copies a dict whole when it grows);
shards grow in steps 64 times smaller. Evicting the least recently used entry of a shard
instead of the whole cache is the same policy in expectation, the keys being spread
uniformly.
"""

from collections import ChainMap, OrderedDict

ENTRY_OVERHEAD = 355
"""Bytes a cached entry costs besides its key and response bytes: the ordered-dict slot and
link, the entry tuple and its float, the key's and response's object headers, the hash of
the question name and its slot in the by-name map (measured with tracemalloc for 100,000
answers of the million-record benchmark's size: 354 bytes, 294-301 at 5,000-20,000 as the
tables grow in powers of two; tests/test_dns_cache.py). A build time, the rcode and the
name in each entry made it 425."""

SHARD_ENTRIES = 1024
"""Entries of the bound per shard, at least: a small cache is one table, exactly LRU."""
SHARD_BYTES = 64 * 2**10
"""Bytes of the bound per shard, at least, so that every shard holds a few answers."""
MAX_SHARDS = 64


def shard_count(max_entries: int, max_bytes: int) -> int:
    """How many shards a cache of these bounds is split into (1 .. ``MAX_SHARDS``)."""
    return max(1, min(MAX_SHARDS, max_entries // SHARD_ENTRIES, max_bytes // SHARD_BYTES))


class AnswerCache:
    """``entries`` maps a key to ``(until, max_udp, qtype, body)`` (the rcode is in the
    body); every entry is exact for ``generation`` and was built no later than ``newest``.
    ``touched_between(old, new)`` (the store's) names what a run of generations changed;
    without it, or when it cannot tell, a new generation empties the cache. The shard count
    is fixed at construction; ``resize`` changes the bounds."""

    __slots__ = ("generation", "newest", "max_entries", "max_bytes", "_shards", "_names",
                 "_counters", "_touched_between")

    def __init__(self, max_entries: int, max_bytes: int, counters, touched_between=None):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("the answer cache needs room for at least one entry")
        self.generation = None
        # The latest build time of any entry: a query at an earlier time (the clock stepped
        # back) empties the cache, since an expired value could otherwise come back to life.
        # One bound for all entries instead of a build time in each saves 32 bytes an entry.
        self.newest = float("-inf")
        self._counters = counters
        self._touched_between = touched_between
        count = shard_count(max_entries, max_bytes)
        self._names = _NameIndex(count)
        self._shards = tuple(_Shard(self._names, counters) for _ in range(count))
        self.resize(max_entries, max_bytes)

    @property
    def entries(self):
        """Every entry (a read-only view across the shards when there are several)."""
        if len(self._shards) == 1:
            return self._shards[0].entries
        return ChainMap(*(shard.entries for shard in self._shards))

    @property
    def bytes(self) -> int:
        return sum(shard.bytes for shard in self._shards)

    def resize(self, max_entries: int, max_bytes: int) -> None:
        """Bound the cache anew, evicting the least recently used entries that no longer
        fit (the zone grew or shrank: ``cache_sizing``)."""
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("the answer cache needs room for at least one entry")
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._counters.cache_max_bytes = max_bytes
        count = len(self._shards)
        for shard in self._shards:
            shard.bound(max(1, max_entries // count), max(1, max_bytes // count))

    def lookup(self, key: bytes, generation: int, now: float, max_udp):
        """The cached entry for ``key`` if it is exact at ``now``, else None."""
        if generation != self.generation:
            self.advance(generation)
        if now < self.newest:
            self.clear()
        shards = self._shards
        entries = shards[hash(key) % len(shards)].entries
        entry = entries.get(key)
        if entry is None or generation is None or now > entry[0] or entry[1] != max_udp:
            return None
        entries.move_to_end(key)
        return entry

    def store(self, key: bytes, response: bytes, generation: int, built: float,
              until_ms: int, max_udp, qtype: int) -> None:
        """Keep ``response`` after its ID for ``key``; exact from ``built`` through the last
        millisecond ``until_ms`` (as ``round(now * 1000)``). Answers a full cache declines
        cost only the doorkeeper's look: the body is copied once admitted."""
        if generation != self.generation:
            self.advance(generation)
        # round(t * 1000) <= until_ms for every t up to this bound: half a millisecond
        # short covers the rounding of the multiplication.
        until = (until_ms - 0.5) / 1000
        if until < built:
            return
        if self._shard_of(key).store(key, response, until, max_udp, qtype):
            if built > self.newest:
                self.newest = built

    def _shard_of(self, key: bytes) -> "_Shard":
        """The shard holding ``key`` (``lookup`` inlines this: it is the hit path)."""
        return self._shards[hash(key) % len(self._shards)]

    def advance(self, generation) -> None:
        """Move to ``generation``: drop the answers for the names the generations since
        changed and every negative answer (its SOA serial follows the generation); forget
        everything when that is not known."""
        old, self.generation = self.generation, generation
        keys = None
        if old is not None and generation is not None and self._touched_between is not None:
            try:
                keys = self._touched_between(old, generation)
            except Exception:       # the store cannot tell: start afresh
                keys = None
        if keys is None:
            self.clear()
            return
        for name in map(_wire_name, keys):
            for key in self._names.keys_of(hash(name)):
                self._shard_of(key).drop(key)
        for shard in self._shards:
            shard.drop_negatives()

    def close(self) -> None:
        """Forget every entry and leave the counters (a new cache replaces this one)."""
        self.clear()
        self._counters.cache_max_bytes = 0

    def clear(self) -> None:
        """Forget every entry."""
        for shard in self._shards:
            shard.clear()
        self._names.clear()
        self.newest = float("-inf")


class _Shard:
    """A share of the cache: its entries in LRU order, their bytes, its negative answers
    and its doorkeeper. Entries and bytes are counted into the DNS counters as they come
    and go, so the counters hold the sum over the shards."""

    __slots__ = ("entries", "bytes", "max_entries", "max_bytes", "negatives", "declined",
                 "declined_max", "_names", "_counters")

    def __init__(self, names, counters):
        self.entries = OrderedDict()
        self.bytes = 0
        self.negatives = set()      # keys of answers carrying the SOA (no answer records)
        self.declined = set()       # hash(key) of answers this full shard declined once
        self._names = names
        self._counters = counters

    def bound(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.declined_max = max(1, max_entries // 4)
        self._evict()

    def store(self, key: bytes, response: bytes, until: float, max_udp, qtype: int) -> bool:
        """Keep the answer unless it is too big or the doorkeeper declines it."""
        size = len(key) + len(response) - 2 + ENTRY_OVERHEAD
        if size > self.max_bytes or not self._admits(key, size):
            return False
        self.drop(key)
        body = response[2:]
        self.entries[key] = (until, max_udp, qtype, body)
        self._names.add(key)
        if body[1] & 0x0F or body[4:6] == b"\x00\x00":   # an error, or no answer records:
            self.negatives.add(key)                     # the SOA
        self.bytes += size
        self._counters.cache_entries += 1
        self._counters.cache_bytes += size
        self._evict()
        return True

    def _admits(self, key: bytes, size: int) -> bool:
        """Whether to store ``key``: always while there is room or when it replaces an
        entry, else on its second miss within the doorkeeper's window."""
        if (len(self.entries) < self.max_entries and self.bytes + size <= self.max_bytes
                or key in self.entries):
            return True
        marker = hash(key)
        declined = self.declined
        if marker in declined:
            declined.discard(marker)
            return True
        if len(declined) >= self.declined_max:
            declined.clear()
        declined.add(marker)
        self._counters.cache_declined += 1
        return False

    def _evict(self) -> None:
        """Drop the least recently used entries until both bounds hold."""
        evicted = 0
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            self.drop(next(iter(self.entries)))
            evicted += 1
        self._counters.cache_evictions += evicted

    def drop(self, key: bytes) -> None:
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        size = len(key) + len(entry[3]) + ENTRY_OVERHEAD
        self.bytes -= size
        self._counters.cache_entries -= 1
        self._counters.cache_bytes -= size
        self._names.discard(key)
        self.negatives.discard(key)

    def drop_negatives(self) -> None:
        for key in list(self.negatives):
            self.drop(key)

    def clear(self) -> None:
        self._counters.cache_entries -= len(self.entries)
        self._counters.cache_bytes -= self.bytes
        self.entries.clear()
        self.negatives.clear()
        self.bytes = 0


class _NameIndex:
    """hash(question name, lowercase wire) -> its one key, or a set of keys when several
    spellings, flag variants or names of that hash are cached; split by that hash as the
    cache is. The hash, not the name: an int costs less than a name of 30 bytes, and a name
    that shares it only drops an answer more when a write touches the other."""

    __slots__ = ("_tables",)

    def __init__(self, count: int):
        self._tables = tuple({} for _ in range(count))

    def add(self, key: bytes) -> None:
        marker = _name_hash(key)
        table = self._tables[marker % len(self._tables)]
        held = table.get(marker)
        if held is None:
            table[marker] = key
        elif held.__class__ is set:
            held.add(key)
        else:
            table[marker] = {held, key}

    def discard(self, key: bytes) -> None:
        marker = _name_hash(key)
        table = self._tables[marker % len(self._tables)]
        held = table[marker]
        if held.__class__ is bytes:
            del table[marker]
        else:
            held.discard(key)
            if not held:
                del table[marker]

    def keys_of(self, marker: int) -> list:
        """The cached keys whose question name hashes to ``marker``."""
        held = self._tables[marker % len(self._tables)].get(marker, ())
        return [held] if held.__class__ is bytes else list(held)

    def clear(self) -> None:
        for table in self._tables:
            table.clear()


def _name_hash(key: bytes) -> int:
    """The hash of the question name of ``key`` (lowercase wire form, as ``_wire_name``)."""
    return hash(key[10:key.find(0, 10) + 1].lower())


def _wire_name(reversed_key: bytes) -> bytes:
    """The lowercase wire form of a name from its reversed-label key (``a.b`` -> b.a)."""
    labels = reversed_key.split(b".")[::-1]
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
