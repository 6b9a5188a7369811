"""How late the reactor runs a timer: the measure of a stall (issue 16).

Every piece of work on the reactor thread delays everything else on it, DNS answers
included. ``StallProbe`` asks the reactor to call it every ``interval`` seconds and records
by how much each call came late; the largest lateness is the longest the reactor was held
(to within one interval). Plain numbers, exported at scrape time by ``dmfdns.metrics``.
"""

from bisect import bisect_left

INTERVAL = 0.010
BUCKETS = (0.005, 0.010, 0.020, 0.050, 0.100, 0.250, 0.500, 1.0, 2.5)


class StallProbe:
    """A 10 ms timer on ``clock`` that keeps its lateness: the largest since start
    (``max_lateness``), the largest since the last ``take_recent_max`` and a cumulative
    histogram over ``BUCKETS`` (``counts[i]`` late by at most ``BUCKETS[i]``)."""

    def __init__(self, clock, interval: float = INTERVAL):
        self.clock = clock
        self.interval = interval
        self.max_lateness = 0.0
        self.recent_max = 0.0
        self.samples = 0
        self.total_lateness = 0.0
        self.counts = [0] * (len(BUCKETS) + 1)
        self._due = None
        self._call = None

    def start(self) -> None:
        if self._call is None:
            self._due = self.clock.seconds() + self.interval
            self._call = self.clock.callLater(self.interval, self._fired)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    @property
    def due(self) -> float | None:
        """When the timer should fire next (the clock's seconds), None when stopped."""
        return self._due if self._call is not None else None

    def take_recent_max(self) -> float:
        """The largest lateness since the previous call (then starts over)."""
        recent, self.recent_max = self.recent_max, 0.0
        return recent

    def _fired(self) -> None:
        now = self.clock.seconds()
        self.record(max(0.0, now - self._due))
        self._due = now + self.interval
        self._call = self.clock.callLater(self.interval, self._fired)

    def record(self, lateness: float) -> None:
        self.samples += 1
        self.total_lateness += lateness
        self.max_lateness = max(self.max_lateness, lateness)
        self.recent_max = max(self.recent_max, lateness)
        self.counts[bisect_left(BUCKETS, lateness)] += 1

    def histogram(self) -> list[tuple[float, int]]:
        """``(upper bound, cumulative count)`` pairs, the last bound infinite."""
        pairs, running = [], 0
        for bound, n in zip(BUCKETS + (float("inf"),), self.counts):
            running += n
            pairs.append((bound, running))
        return pairs
