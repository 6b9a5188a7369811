"""The CLI's job runner on a private reactor: results, errors, and an outside stop."""

import pytest
from twisted.internet import defer, task
from twisted.internet.selectreactor import SelectReactor

from dmfdns.client import runner


def _run(job):
    return runner.run(SelectReactor(), job, install_signal_handlers=False)


def test_the_result_of_the_job_is_returned():
    async def job(reactor):
        await task.deferLater(reactor, 0.01, lambda: None)
        return 42
    assert _run(job) == 42


def test_the_exception_of_the_job_is_raised():
    async def job(reactor):
        raise ValueError("boom")
    with pytest.raises(ValueError, match="boom"):
        _run(job)


def test_an_outside_stop_cancels_the_job_and_lets_it_clean_up():
    cleaned = []

    async def job(reactor):
        reactor.callLater(0.01, reactor.stop)     # what SIGTERM does
        try:
            await defer.Deferred()                # waits forever
        finally:
            await task.deferLater(reactor, 0.01, lambda: None)   # the reactor still runs
            cleaned.append(True)
    with pytest.raises(runner.Interrupted):
        _run(job)
    assert cleaned == [True]


def test_a_job_that_ends_during_the_stop_still_counts_as_interrupted():
    async def job(reactor):
        reactor.callLater(0.01, reactor.stop)
        try:
            await defer.Deferred()
        except defer.CancelledError:
            return "finished anyway"
    with pytest.raises(runner.Interrupted):
        _run(job)
