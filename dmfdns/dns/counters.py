"""Hot-path DNS counters: plain integers in dicts, incremented inline by the responder and
the transports, read at scrape time by the metrics collector (which lives elsewhere).

Label values are bounded: protocols are whatever the transports pass ("udp", "tcp"),
qtypes outside ``TRACKED_QTYPES`` are counted as "other", rcodes are the 4096 possible
extended rcodes at most. No qname or client address is ever a key.
"""

import bisect
from dataclasses import dataclass

from dnslib import QTYPE, RCODE

TRACKED_QTYPES = frozenset({1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 43, 46, 47, 48, 50, 52, 64,
                            65, 251, 252, 255, 257})
OTHER = -1

# Bucket upper bounds as CoreDNS uses them (dns_response_size_bytes, request_duration).
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000, 48000,
                64000)
DURATION_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064,
                    0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192)
_BADVERS = 16


def qtype_label(qtype: int) -> str:
    if qtype == OTHER:
        return "other"
    return str(QTYPE.get(qtype, f"TYPE{qtype}"))


def rcode_label(rcode: int) -> str:
    if rcode == _BADVERS:
        return "BADVERS"
    return str(RCODE.get(rcode, f"RCODE{rcode}"))


@dataclass(frozen=True)
class HistogramSnapshot:
    """Cumulative buckets as Prometheus wants them: ``((le, count), ...)`` ending in +Inf."""

    buckets: tuple
    count: int
    sum: float


class _Histogram:
    __slots__ = ("bounds", "counts", "total", "sum")

    def __init__(self, bounds):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0
        self.sum = 0.0

    def observe(self, value) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += 1
        self.sum += value

    def snapshot(self) -> HistogramSnapshot:
        running, buckets = 0, []
        for bound, count in zip(self.bounds + (float("inf"),), self.counts):
            running += count
            buckets.append((bound, running))
        return HistogramSnapshot(tuple(buckets), self.total, self.sum)


class DnsCounters:
    """Counters keyed by plain tuples; the read API returns copies with string labels."""

    def __init__(self):
        self.queries = {}           # (proto, qtype or OTHER) -> n
        self.responses = {}         # (proto, rcode) -> n
        self.truncated = {}         # proto -> n
        self.dropped = {}           # reason -> n ("runt", "response")
        self._sizes = {}            # proto -> _Histogram of response bytes
        self._durations = {}        # proto -> _Histogram of seconds
        # The answer cache (answer_cache.py): the responder counts hits and misses (every
        # query looked up and not answered from the cache), the cache the rest.
        self.cache_hits = 0
        self.cache_misses = 0
        self.errors = {}            # proto -> decisions that raised (store failure, bug)
        self.rrl = {}               # action ("slipped", "dropped") -> n
        self.cache_evictions = 0
        self.cache_declined = 0     # answers a full cache did not admit (first miss)
        self.cache_entries = 0
        self.cache_bytes = 0
        self.cache_max_bytes = 0    # the cache's byte bound now (it follows an "auto" zone)
        # Positive DO answers of signed zones (lean.py): "stored" spliced the RRSIGs stored
        # at write time, "fallback" found none right for the live RRset and left the
        # answer to on-the-fly signing.
        self.signed = {"stored": 0, "fallback": 0}

    def count_query(self, proto: str, qtype: int) -> None:
        key = (proto, qtype if qtype in TRACKED_QTYPES else OTHER)
        self.queries[key] = self.queries.get(key, 0) + 1

    def count_response(self, proto: str, rcode: int, size: int) -> None:
        key = (proto, rcode)
        self.responses[key] = self.responses.get(key, 0) + 1
        histogram = self._sizes.get(proto)
        if histogram is None:
            histogram = self._sizes[proto] = _Histogram(SIZE_BUCKETS)
        histogram.observe(size)

    def count_answer(self, proto: str, qtype: int, rcode: int, size: int) -> None:
        """``count_query`` and ``count_response`` in one call, for the fast path (every
        lean or cached answer): the same counts, a third of the calls."""
        key = (proto, qtype if qtype in TRACKED_QTYPES else OTHER)
        queries = self.queries
        queries[key] = queries.get(key, 0) + 1
        key = (proto, rcode)
        responses = self.responses
        responses[key] = responses.get(key, 0) + 1
        histogram = self._sizes.get(proto)
        if histogram is None:
            histogram = self._sizes[proto] = _Histogram(SIZE_BUCKETS)
        histogram.counts[bisect.bisect_left(SIZE_BUCKETS, size)] += 1
        histogram.total += 1
        histogram.sum += size

    def count_truncated(self, proto: str) -> None:
        self.truncated[proto] = self.truncated.get(proto, 0) + 1

    def count_dropped(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def observe_duration(self, proto: str, seconds: float) -> None:
        """Called by the transports, which own a clock; the responder has none."""
        histogram = self._durations.get(proto)
        if histogram is None:
            histogram = self._durations[proto] = _Histogram(DURATION_BUCKETS)
        histogram.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1   # observe()
        histogram.total += 1
        histogram.sum += seconds

    # Read API for the metrics collector.

    def query_counts(self) -> dict:
        """``{(proto, qtype_name): n}``."""
        return {(proto, qtype_label(qtype)): n for (proto, qtype), n in self.queries.items()}

    def response_counts(self) -> dict:
        """``{(proto, rcode_name): n}``."""
        return {(proto, rcode_label(rcode)): n
                for (proto, rcode), n in self.responses.items()}

    def truncated_counts(self) -> dict:
        return dict(self.truncated)

    def dropped_counts(self) -> dict:
        return dict(self.dropped)

    def response_sizes(self) -> dict:
        """``{proto: HistogramSnapshot}`` of response sizes in bytes."""
        return {proto: h.snapshot() for proto, h in self._sizes.items()}

    def durations(self) -> dict:
        """``{proto: HistogramSnapshot}`` of request durations in seconds."""
        return {proto: h.snapshot() for proto, h in self._durations.items()}

    def count_error(self, proto: str) -> None:
        self.errors[proto] = self.errors.get(proto, 0) + 1

    def count_rrl(self, action: str) -> None:
        self.rrl[action] = self.rrl.get(action, 0) + 1

    # Several processes (DNS workers) adding up to one scrape.

    def snapshot(self) -> dict:
        """Every count as plain JSON values, for another process to ``add`` up."""
        histograms = {
            kind: {proto: [h.counts, h.total, h.sum] for proto, h in table.items()}
            for kind, table in (("sizes", self._sizes), ("durations", self._durations))}
        return {"queries": [[p, q, n] for (p, q), n in self.queries.items()],
                "responses": [[p, r, n] for (p, r), n in self.responses.items()],
                "truncated": self.truncated, "dropped": self.dropped, "errors": self.errors,
                "rrl": self.rrl, "signed": self.signed, **histograms, "cache": [
                    self.cache_hits, self.cache_misses, self.cache_evictions,
                    self.cache_entries, self.cache_bytes, self.cache_declined,
                    self.cache_max_bytes]}

    def add(self, snapshot: dict) -> None:
        """Add the counts of ``snapshot`` (another process's ``snapshot()``) to these."""
        for proto, qtype, n in snapshot["queries"]:
            self.queries[(proto, qtype)] = self.queries.get((proto, qtype), 0) + n
        for proto, rcode, n in snapshot["responses"]:
            self.responses[(proto, rcode)] = self.responses.get((proto, rcode), 0) + n
        for name in ("truncated", "dropped", "errors", "rrl", "signed"):
            table = getattr(self, name)
            for key, n in snapshot.get(name, {}).items():
                table[key] = table.get(key, 0) + n
        for name, bounds in (("sizes", SIZE_BUCKETS), ("durations", DURATION_BUCKETS)):
            table = self._sizes if name == "sizes" else self._durations
            for proto, (counts, total, total_sum) in snapshot[name].items():
                histogram = table.get(proto)
                if histogram is None:
                    histogram = table[proto] = _Histogram(bounds)
                histogram.counts = [a + b for a, b in zip(histogram.counts, counts)]
                histogram.total += total
                histogram.sum += total_sum
        hits, misses, evictions, entries, size, declined, max_bytes = snapshot["cache"]
        self.cache_max_bytes += max_bytes
        self.cache_declined += declined
        self.cache_hits += hits
        self.cache_misses += misses
        self.cache_evictions += evictions
        self.cache_entries += entries
        self.cache_bytes += size

    def cache_counts(self) -> dict:
        """The answer cache's ``hits``, ``misses``, ``evictions``, ``declined``,
        ``entries``, ``bytes`` and ``max_bytes``."""
        return {"hits": self.cache_hits, "misses": self.cache_misses,
                "evictions": self.cache_evictions, "declined": self.cache_declined,
                "entries": self.cache_entries, "bytes": self.cache_bytes,
                "max_bytes": self.cache_max_bytes}
