"""The node's one budget of reactor time per turn (dmfdns/slicing.py): sliced jobs resumed
in the same pass of the reactor share it instead of each taking a slice of its own, and a
job resumed after the others spent it still makes progress."""

import pytest_twisted
from twisted.internet import defer, task

from dmfdns.slicing import MIN_SLICE, Slicer


class PassClock(task.Clock):
    """``task.Clock`` whose ``run_pass`` runs the calls due when it starts, as one pass of
    the reactor's timed calls does (``advance`` would also run the ones they add)."""

    passes = 0

    def run_pass(self) -> None:
        self.passes += 1
        for call in [c for c in self.calls if c.getTime() <= self.seconds()]:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


class WorkTimer:
    """A monotonic timer that moves only when a job does a unit of work."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def job(slicer: Slicer, timer: WorkTimer, units: int, unit: float, log: list, name):
    """``units`` units of work of ``unit`` seconds; ``log`` gets (name, the pass) of each."""
    until = slicer.deadline()
    for _ in range(units):
        until = await slicer.turn(until)     # before each unit, as anti-entropy asks
        timer.now += unit
        log.append((name, slicer.clock.passes))


def run_jobs(count: int, units: int, unit: float):
    clock, timer = PassClock(), WorkTimer()
    slicer = Slicer(clock, timer=timer, seconds=0.010)
    log = []
    runs = [defer.ensureDeferred(job(slicer, timer, units, unit, log, n)) for n in range(count)]
    passes = []
    while not all(run.called for run in runs):
        started = timer.now
        clock.run_pass()
        passes.append(timer.now - started)
        assert len(passes) < 10_000
    return passes, log


def test_jobs_resumed_in_one_pass_share_its_budget():
    # Four jobs of 2 ms units, as a catching-up node runs (index, diff, admission, parse):
    # with a slice each, a pass would run 40 ms of them.
    passes, log = run_jobs(count=4, units=60, unit=0.002)
    assert max(passes) <= 0.010 + 4 * (MIN_SLICE + 0.002) + 1e-9
    assert sum(passes) > 0.4              # all the work was done


def test_no_job_starves_when_the_others_spend_the_budget():
    passes, log = run_jobs(count=4, units=40, unit=0.003)
    # Every job did work in every pass until it was done (the first one resumed in a pass
    # gets most of its budget and ends first; the others still move on each pass).
    for name in range(4):
        seen = {each for who, each in log if who == name}
        assert seen == set(range(min(seen), max(seen) + 1)), name
    assert max(each for _, each in log) <= 40


def test_a_slice_with_time_left_does_not_pause():
    clock, timer = PassClock(), WorkTimer()
    slicer = Slicer(clock, timer=timer, seconds=0.010)
    log = []
    run = defer.ensureDeferred(job(slicer, timer, 4, 0.001, log, "small"))
    assert run.called and slicer.pauses == 0   # 4 ms of work inside one 10 ms budget
    # The budget closes on the next pass: a later job gets a fresh one.
    clock.run_pass()
    assert slicer.deadline() == timer.now + 0.010


@pytest_twisted.inlineCallbacks
def test_on_the_real_reactor_a_pause_lets_a_timer_fire():
    from twisted.internet import reactor
    slicer = Slicer(reactor, seconds=0.0)
    fired = []
    reactor.callLater(0, fired.append, True)
    yield slicer.pause()
    assert fired == [True]


def test_a_job_resumed_after_the_budget_is_spent_still_gets_min_slice():
    passes, log = run_jobs(count=3, units=200, unit=0.0002)
    # Each job, in each pass but its last, did at least MIN_SLICE of work (5 units).
    for name in range(3):
        per_pass = {}
        for who, each in log:
            if who == name:
                per_pass[each] = per_pass.get(each, 0) + 1
        counts = [per_pass[each] for each in sorted(per_pass)][:-1]
        assert counts and min(counts) >= MIN_SLICE / 0.0002 - 1, (name, counts)
