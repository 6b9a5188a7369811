"""Group commit: writes that arrive together share one durable store transaction (issue 16).

Every acknowledged write must be on disk before it is acknowledged (docs/decisions.md §3),
and a durable LMDB commit costs two disk flushes whatever it carries. So an admitted write
(``dmfdns.store.writes.Accepted``) is not committed on its own: ``GroupCommitter.submit``
queues it and returns a Deferred, and the queue goes to the write service's commit step
(``WriteService.commit``: one store transaction) on the reactor's next turn (after
``max_delay`` seconds, 0 by default), or at once when it holds ``max_records`` writes or
``max_bytes`` of names and values. Everything the reactor read in one turn (many clients'
requests) thus goes into one transaction; a lone client is not kept waiting.

Each Deferred fires only after the transaction is durable, with the number of values that
write changed. A commit that fails for want of room (StoreFull) fails every Deferred of the
batch that adds, and none is acknowledged; its deletes are committed again on their own,
since a store keeps room for writes that only remove (a full store must drain). Any other
StoreError of a batch of several is retried write by write, so a write the store refuses
fails alone and the others are still applied.

Commits run in the commit runner (the reactor's thread pool in a node), off the reactor
thread: a durable commit waits for the disk, for seconds when the kernel is writing back
gigabytes, and the reactor must answer DNS meanwhile. The store's write lock keeps one
writer at a time. The node's other writes — a pulled batch (``sync.anti_entropy``), a
sweep (``node_store.Sweeper``), a sync cursor — go through ``call``, the same runner, so
nothing on the reactor thread waits on the disk. The one exception is a batch of removals
only (an HTTP delete): it may use the store's drain reserve, which resizes the map and so
must not run beside the reactor's reads, and it commits on the reactor thread.
"""

from dataclasses import dataclass

from twisted.internet import defer
from twisted.python import failure
from twisted.logger import Logger

from .store.api import StoreError, StoreFull

log = Logger(namespace="dmfdns.store")


@dataclass(frozen=True)
class CommitLimits:
    max_records: int = 1000
    max_bytes: int = 4 * 2**20
    max_delay: float = 0.0


def _removals_only(batch) -> bool:
    return all(write.store_op()[0] == "delete" for write, _ in batch)


class GroupCommitter:
    """Batches admitted writes for ``commit(accepted, now=...)`` (``WriteService.commit``)
    on ``clock`` (an IReactorTime). Counters for the metrics: ``commits``, ``writes``,
    ``failed_commits``, ``largest``."""

    def __init__(self, commit, clock, limits: CommitLimits = CommitLimits(), run=None):
        self.commit = commit
        self.clock = clock
        self.limits = limits
        self._run = run                     # run(fn, *args, **kw) -> Deferred, or None
        self._in_flight = None              # the Deferred of the batch being committed
        self._queue: list[tuple[object, defer.Deferred]] = []
        self._bytes = 0
        self._call = None
        self.commits = 0
        self.writes = 0
        self.failed_commits = 0
        self.largest = 0

    def call(self, fn, *args, **kwargs) -> defer.Deferred:
        """Run ``fn(*args, **kwargs)``, a store write that is not an admitted record write
        (a pulled batch, a sweep, a meta value), where commits run: in the commit runner,
        or inline without one. The Deferred fires with its result or fails with its
        error."""
        if self._run is None:
            return defer.maybeDeferred(fn, *args, **kwargs)
        return self._run(fn, *args, **kwargs)

    def submit(self, write) -> defer.Deferred:
        """Queue ``write``; the Deferred fires with its result once durable, or fails
        with the StoreError that refused it or its whole batch."""
        done = defer.Deferred()
        self._queue.append((write, done))
        self._bytes += len(write.name) + len(write.value or "")
        if (len(self._queue) >= self.limits.max_records
                or self._bytes >= self.limits.max_bytes):
            self.flush()
        elif self._call is None:
            self._call = self.clock.callLater(self.limits.max_delay, self.flush)
        return done

    def flush(self) -> None:
        """Commit everything queued now (also called by the timer)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._in_flight is not None:
            return          # the batch being committed flushes the queue when it is done
        batch, self._queue, self._bytes = self._queue, [], 0
        if not batch:
            return
        if self._run is not None and not _removals_only(batch):
            self._in_flight = self._run(self.commit, [write for write, _ in batch],
                                        now=self.clock.seconds())
            self._in_flight.addBoth(self._committed, batch)
            return
        try:
            results = self.commit([write for write, _ in batch], now=self.clock.seconds())
        except Exception as error:
            self._refused(batch, error)
            return
        self._done(batch, results)

    def _committed(self, outcome, batch) -> None:
        """A batch committed in a thread is done (results or a Failure): answer it, then
        commit what queued up meanwhile."""
        self._in_flight = None
        if isinstance(outcome, failure.Failure):
            self._refused(batch, outcome.value, outcome)
        else:
            self._done(batch, outcome)
        if self._queue:
            self.flush()

    def _refused(self, batch, error, trace=None) -> None:
        """``commit`` raised ``error`` for ``batch`` (nothing of it was applied); ``trace``
        is its Failure when it was raised in a thread."""
        if isinstance(error, StoreFull) and len(batch) > 1:
            self._deletes_apart(batch, error)
        elif isinstance(error, StoreError):
            if isinstance(error, StoreFull) or len(batch) == 1:
                self._failed(batch, error)
            else:
                for one in batch:           # find the write the store refuses
                    self._commit_alone(one)
        else:                               # a bug: nothing of the batch was applied
            log.failure("a group commit of {n} writes failed", trace, n=len(batch))
            self._failed(batch, error)

    def _deletes_apart(self, batch, error: StoreFull) -> None:
        deletes = [item for item in batch if item[0].store_op()[0] == "delete"]
        self._failed([item for item in batch if item not in deletes], error)
        if not deletes:
            return
        try:
            results = self.commit([write for write, _ in deletes], now=self.clock.seconds())
        except StoreError as again:
            self._failed(deletes, again)
        else:
            self._done(deletes, results)

    def _commit_alone(self, item) -> None:
        try:
            results = self.commit([item[0]], now=self.clock.seconds())
        except StoreError as error:
            self._failed([item], error)
        else:
            self._done([item], results)

    def _done(self, batch, results) -> None:
        self.commits += 1
        self.writes += len(batch)
        self.largest = max(self.largest, len(batch))
        for (_, done), result in zip(batch, results):
            done.callback(result)

    def _failed(self, batch, error) -> None:
        self.failed_commits += 1
        for _, done in batch:
            done.errback(error)

    def stop(self) -> defer.Deferred:
        """Commit what is queued (a node stopping still answers what it took); fires once
        nothing is being committed any more, so the store may close."""
        self.flush()
        if self._in_flight is None:
            return defer.succeed(None)
        done = defer.Deferred()

        def drained(_):
            if self._in_flight is None:
                done.callback(None)
            else:
                self._in_flight.addBoth(drained)
        self._in_flight.addBoth(drained)
        return done
