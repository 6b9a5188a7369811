"""The answer cache: lean-path responses kept for exactly as long as they stay
byte-identical to what the lean path would build again.

The key is the query after its 2-byte ID, so everything that shapes the response is in it:
the question as sent (0x20 case), the flags (RD, CD), the OPT record (payload, DO). The
value is the response after its ID and the conditions under which it is still exact:

* the store **generation** it was built at: every commit bumps the generation (SOA
  serials follow it too), and the cache empties when it sees a new one, so no write can be
  missed. The generation is an in-process counter of the writing store (``engine``), so
  checking it costs no LMDB transaction;
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
"""

from collections import OrderedDict

ENTRY_OVERHEAD = 270
"""Bytes a cached entry costs besides its key and response: the ordered-dict slot and
link, the entry tuple, the bytes headers and the floats (measured with tracemalloc)."""


class AnswerCache:
    """``entries`` maps a key to ``(built, until, max_udp, qtype, rcode, body)``; every entry
    belongs to ``generation``. The responder reads ``entries`` inline on its hot path."""

    __slots__ = ("entries", "generation", "max_entries", "max_bytes", "bytes", "_counters")

    def __init__(self, max_entries: int, max_bytes: int, counters):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("the answer cache needs room for at least one entry")
        self.entries = OrderedDict()
        self.generation = None
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._counters = counters

    def lookup(self, key: bytes, generation: int, now: float, max_udp):
        """The cached response body for ``key`` if it is exact at ``now``, else None."""
        entry = self.entries.get(key)
        if (entry is None or generation != self.generation or generation is None
                or not entry[0] <= now <= entry[1] or entry[2] != max_udp):
            return None
        self.entries.move_to_end(key)
        return entry

    def store(self, key: bytes, body: bytes, *, generation: int, built: float,
              until_ms: int, max_udp, qtype: int, rcode: int) -> None:
        """Keep ``body`` (the response after its ID) for ``key``; exact from ``built``
        through the last millisecond ``until_ms`` (as ``round(now * 1000)``)."""
        if generation != self.generation:
            self.clear()
            self.generation = generation
        # round(t * 1000) <= until_ms for every t up to this bound: half a millisecond
        # short covers the rounding of the multiplication.
        until = (until_ms - 0.5) / 1000
        if until < built:
            return
        size = len(key) + len(body) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        entries = self.entries
        old = entries.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old[5]) + ENTRY_OVERHEAD
        entries[key] = (built, until, max_udp, qtype, rcode, body)
        self.bytes += size
        evicted = 0
        while len(entries) > self.max_entries or self.bytes > self.max_bytes:
            old_key, old = entries.popitem(last=False)
            self.bytes -= len(old_key) + len(old[5]) + ENTRY_OVERHEAD
            evicted += 1
        counters = self._counters
        counters.cache_evictions += evicted
        counters.cache_entries = len(entries)
        counters.cache_bytes = self.bytes

    def clear(self) -> None:
        """Forget every entry (a new generation: the store changed)."""
        self.entries.clear()
        self.bytes = 0
        self._counters.cache_entries = 0
        self._counters.cache_bytes = 0
