"""Running one asynchronous job on a reactor from synchronous code (the CLI).

The reactor is passed in (only ``__main__`` knows the global one). ``run`` starts it, runs
``job(reactor)`` to completion, stops it and returns the job's result or raises its
exception.

When the reactor is stopped from outside first (SIGINT, SIGTERM), the job is cancelled
while the reactor still runs: its ``finally`` blocks get up to ``UNWIND_TIMEOUT`` seconds to
finish (Twisted waits for a "before shutdown" trigger's Deferred), and ``run`` then raises
``Interrupted`` whatever the job ended with.
"""

from twisted.internet import defer
from twisted.python.failure import Failure

UNWIND_TIMEOUT = 3.0


class Interrupted(Exception):
    """The reactor stopped (a signal) before the job finished."""


def run(reactor, job, *, install_signal_handlers: bool = True):
    outcome, interrupted, running = [], [], []

    def start():
        finished = defer.ensureDeferred(_call(job, reactor))
        running.append(finished)
        finished.addBoth(outcome.append)
        finished.addBoth(lambda _: None if interrupted else reactor.stop())

    def shutting_down():
        if outcome or not running:
            return None
        interrupted.append(True)
        unwound = defer.Deferred()
        timer = reactor.callLater(UNWIND_TIMEOUT, _fire, unwound)
        running[0].addBoth(lambda _: (timer.cancel() if timer.active() else None,
                                      _fire(unwound)))
        running[0].cancel()
        return unwound

    reactor.callWhenRunning(start)
    # Fired (and used up) by the one shutdown of this reactor; a reactor runs once.
    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
    reactor.run(installSignalHandlers=install_signal_handlers)
    if interrupted or not outcome:
        raise Interrupted("interrupted")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def _fire(deferred) -> None:
    if not deferred.called:
        deferred.callback(None)


async def _call(job, reactor):
    return await job(reactor)
