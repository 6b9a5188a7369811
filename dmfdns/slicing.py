"""One budget of reactor time per turn, shared by all the work a node does in slices.

DNS is answered on the reactor thread, so long work there (building the full-set index,
diffing and admitting a pulled page, serving a digest page or a pull, parsing a peer's
answer) runs in slices with a reactor turn between them. When each of those jobs kept a
slice budget of its own, several of them resumed in the same pass of the reactor's timed
calls and ran their slices back to back: 10 ms each, 40-50 ms before the reactor polled
its sockets again (a node catching up runs four such jobs at once). A ``Slicer`` is the
one budget they share: the first slice of a pass opens it, every job's slice ends when
it is spent, and the next pass opens a new one.

A job resumed after a pause gets at least ``MIN_SLICE`` of its own even when the jobs
ahead of it spent the pass's budget, so none of them starves.
"""

import time

from twisted.internet import task

SLICE_SECONDS = 0.010   # the reactor time all sliced work may take between two polls
MIN_SLICE = 0.001       # what a resumed job may always do before it pauses again


class Slicer:
    """Shared slice budget on ``clock`` (the reactor: ``callLater``); ``timer`` (seconds,
    monotonic) measures the slices."""

    def __init__(self, clock, *, timer=time.perf_counter, seconds: float = SLICE_SECONDS):
        self.clock = clock
        self.timer = timer
        self.seconds = seconds
        self._ends = None       # the end of this pass's budget, once a slice opened it
        self.pauses = 0

    def deadline(self) -> float:
        """When this pass's budget is spent (``timer`` seconds); the first call of a pass
        opens it, and the next pass of timed calls closes it."""
        if self._ends is None:
            self._ends = self.timer() + self.seconds
            self.clock.callLater(0, self._close)
        return self._ends

    def _close(self) -> None:
        self._ends = None

    def pause(self):
        """A Deferred that fires on the reactor's next pass (the sockets are polled first)."""
        self.pauses += 1
        return task.deferLater(self.clock, 0, lambda: None)

    def slice_end(self) -> float:
        """When a slice starting now ends: with the pass's budget, but at least
        ``MIN_SLICE`` from now when the jobs ahead spent it."""
        return max(self.deadline(), self.timer() + MIN_SLICE)

    async def turn(self, until: float) -> float:
        """``until`` while the current slice has time left; else pause and return when the
        next slice ends (``slice_end``)."""
        if self.timer() < until:
            return until
        await self.pause()
        return self.slice_end()
