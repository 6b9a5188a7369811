"""Running one asynchronous job on a reactor from synchronous code (the CLI).

The reactor is passed in (only ``__main__`` knows the global one). ``run`` starts it, runs
``job(reactor)`` to completion, stops it and returns the job's result or raises its
exception. A reactor stopped from outside first (SIGINT, SIGTERM) raises ``Interrupted``;
shutdown triggers registered by the job still run before ``run`` returns.
"""

from twisted.internet import defer
from twisted.python.failure import Failure


class Interrupted(Exception):
    """The reactor stopped (a signal) before the job finished."""


def run(reactor, job, *, install_signal_handlers: bool = True):
    outcome = []

    def start():
        finished = defer.ensureDeferred(_call(job, reactor))
        finished.addBoth(outcome.append)
        finished.addBoth(lambda _: reactor.stop() if reactor.running else None)

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=install_signal_handlers)
    if not outcome:
        raise Interrupted("interrupted")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


async def _call(job, reactor):
    return await job(reactor)
