"""What the reactor thread was doing while it was held: the cause of a stall (issue 16).

``StallProbe`` measures how late the reactor runs a timer, not why. ``StallTrace`` is a
watcher thread beside the reactor: every ``interval`` it looks at the probe's next due
time, and while the reactor is later than ``threshold`` it samples the reactor thread's
Python stack (``sys._current_frames``). When the probe fires again, one log line tells how
long the reactor was held, the stack seen most often meanwhile, and how late the watcher
itself woke: a watcher as late as the reactor means the GIL was held throughout (C code
that does not release it, e.g. a page fault inside an LMDB read) or the process was not
scheduled at all; a watcher on time beside a late reactor means the reactor thread ran
Python code or waited with the GIL released (a lock, a disk wait), and the stack says
which. Python's cyclic garbage collector holds the GIL while it runs, so the longest
collection since the previous report is told too. And the reactor thread's own CPU time
over the stall, from when the watcher saw it (its thread CPU clock): close to the wall
time, the node's own work held the reactor; far below it, the thread was runnable but not
running (more runnable processes than cores, or the GIL held by another thread). A diagnostic for operators and benchmarks
(``[node] stall_log``), off by default.
"""

import collections
import gc
import sys
import threading
import time
import traceback

from twisted.logger import Logger

log = Logger(namespace="dmfdns.stall")
FRAMES = 12          # innermost frames kept per sample


class StallTrace:
    """Watch ``probe`` (a started ``StallProbe``) from a thread of its own; ``timer`` reads
    the same clock as the probe's (the reactor's ``seconds``, safe from any thread)."""

    def __init__(self, probe, timer, threshold: float, interval: float = 0.005):
        self.probe = probe
        self.timer = timer
        self.threshold = threshold
        self.interval = interval
        self.reports: list[dict] = []          # the last few stalls, for tests and status
        self._stop = threading.Event()
        self._thread = None
        self._target = None
        self._cpu_clock = None                 # the reactor thread's CPU clock id
        self._gc_started = None
        self.gc_longest = (0.0, -1)            # (seconds, generation) since the last report

    def start(self) -> None:
        """Call on the reactor thread: its identity is the one sampled."""
        if self._thread is None:
            self._target = threading.get_ident()
            self._cpu_clock = _thread_cpu_clock(self._target)
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="dmfdns-stall-trace",
                                            daemon=True)
            self._thread.start()
            gc.callbacks.append(self._collected)

    def _collected(self, phase: str, info: dict) -> None:
        """A garbage collection started or ended (``gc.callbacks``)."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            took = time.perf_counter() - self._gc_started
            if took > self.gc_longest[0]:
                self.gc_longest = (took, info.get("generation", -1))

    def stop(self) -> None:
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self._thread = None

    def _watch(self) -> None:
        held, watcher_late = None, 0.0
        while not self._stop.is_set():
            asleep = time.monotonic()
            self._stop.wait(self.interval)
            watcher_late = max(watcher_late, time.monotonic() - asleep - self.interval)
            due = self.probe.due
            late = self.timer() - due if due is not None else 0.0
            if late > self.threshold:
                if held is None or held[0] != due:
                    held = (due, collections.Counter(), self.timer(), self._cpu())
                stack = self._sample()
                if stack:
                    held[1][stack] += 1
            elif held is not None:
                self._report(held, self.timer() - held[0], watcher_late)
                held, watcher_late = None, 0.0
            else:
                watcher_late = 0.0    # only a lateness during (or ending in) a stall counts

    def _cpu(self) -> float | None:
        """CPU seconds the reactor thread has used, or None where that cannot be read."""
        if self._cpu_clock is None:
            return None
        try:
            return time.clock_gettime(self._cpu_clock)
        except OSError:             # the thread has ended
            return None

    def _sample(self) -> str:
        frame = sys._current_frames().get(self._target)
        if frame is None:
            return ""
        return "".join(traceback.format_stack(frame, limit=FRAMES))

    def _report(self, held, seconds: float, watcher_late: float) -> None:
        stacks = held[1]
        samples = sum(stacks.values())
        stack, seen = stacks.most_common(1)[0] if stacks else ("(no sample)\n", 0)
        collected, self.gc_longest = self.gc_longest, (0.0, -1)
        watched = self.timer() - held[2]
        cpu = self._cpu() - held[3] if held[3] is not None else float("nan")
        report = {"seconds": seconds, "samples": samples, "seen": seen, "stack": stack,
                  "watcher_late": watcher_late, "gc_seconds": collected[0],
                  "watched_seconds": watched, "cpu_seconds": cpu}
        self.reports = self.reports[-9:] + [report]
        log.warn("reactor held about {ms:.0f} ms; the watcher woke up to {late:.0f} ms "
                 "late; the longest garbage collection since the last report {gc:.0f} ms "
                 "(generation {generation}); the reactor thread ran {cpu:.0f} ms of CPU in "
                 "the last {watched:.0f} ms of it; {seen} of {samples} samples in:\n{stack}",
                 ms=1000 * seconds, late=1000 * watcher_late, gc=1000 * collected[0],
                 cpu=1000 * cpu, watched=1000 * watched,
                 generation=collected[1], seen=seen, samples=samples, stack=stack)


def _thread_cpu_clock(ident: int):
    """The CPU-time clock of the thread ``ident`` (POSIX), or None on platforms without."""
    try:
        return time.pthread_getcpuclockid(ident)
    except (AttributeError, OSError):
        return None
