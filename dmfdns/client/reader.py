"""Reads across a cluster: the union of what its nodes hold, without waiting for the slowest.

Writes reach a majority of the nodes (``writer.quorum``), so the values held by any majority
include every acknowledged write (two majorities of one set always share a node). The
``UnionReader`` therefore asks every node at once and answers as soon as a majority has
answered plus a short ``grace`` for the others, or when all have: a dead or slow node costs
nothing once a majority is in. The reference reader always waits its full 5 s timeout
(docs/compatibility.md §5). When fewer than a majority can answer, whatever did
answer is returned (best effort); when none can, the read fails.

``RoutedReader`` sends names under the cluster's zones to the union reader and everything
else to the resolver pool, as the reference's composite reader does.
"""

from dataclasses import dataclass

from twisted.internet import defer

from ..proto import names
from .resolver import ReadError

DEFAULT_GRACE = 0.05


def majority(count: int) -> int:
    return count // 2 + 1


@dataclass
class NodeHealth:
    server: object
    answers: int = 0
    failures: int = 0
    last_error: str = ""


class UnionReader:
    """``read(name)`` -> Deferred list of the values any answering node holds."""

    def __init__(self, servers, client, clock, *, grace: float = DEFAULT_GRACE):
        if not servers:
            raise ValueError("a union reader needs at least one node")
        self.health = [NodeHealth(server) for server in servers]
        self.client, self.clock, self.grace = client, clock, grace

    def read(self, name: str):
        return _UnionRead(self, name).result


class _UnionRead:
    """One read in progress: collects answers and decides when it has enough."""

    def __init__(self, reader: UnionReader, name: str):
        self.reader, self.name = reader, name
        self.result = defer.Deferred()
        self.values, self.answered, self.failed, self.errors = [], 0, 0, []
        self.grace_timer = None
        self.pending = []
        for health in reader.health:
            query = reader.client.query_txt(health.server, name)
            self.pending.append(query)
            query.addCallbacks(self._answer, self._failure, callbackArgs=(health, query),
                               errbackArgs=(health, query))

    def _answer(self, answer, health, query):
        health.answers += 1
        self.answered += 1
        for value in answer.values:
            if value not in self.values:
                self.values.append(value)
        self._settled(query)

    def _failure(self, failure, health, query):
        if failure.check(defer.CancelledError):
            return None
        health.failures += 1
        health.last_error = failure.getErrorMessage()
        self.failed += 1
        self.errors.append(f"{health.server}: {health.last_error}")
        self._settled(query)
        return None

    def _settled(self, query):
        if query in self.pending:
            self.pending.remove(query)
        if self.result.called:
            return
        total = len(self.reader.health)
        if self.answered + self.failed == total:
            self._finish()
        elif self.answered >= majority(total) and self.grace_timer is None:
            self.grace_timer = self.reader.clock.callLater(self.reader.grace, self._finish)

    def _finish(self):
        if self.result.called:
            return
        if self.grace_timer is not None and self.grace_timer.active():
            self.grace_timer.cancel()
        for query in list(self.pending):
            query.cancel()
        if self.answered:
            self.result.callback(list(self.values))
        else:
            self.result.errback(ReadError(f"no node answered for {self.name}: "
                                          + "; ".join(self.errors)))


class RoutedReader:
    """Names equal to or under one of ``zones`` go to ``cluster``; others to ``outside``."""

    def __init__(self, zones, cluster, outside=None):
        self.zones = tuple(names.folded(z) for z in zones)
        self.cluster, self.outside = cluster, outside

    def route(self, name: str):
        name = names.folded(name)
        inside = any(names.within(name, z) for z in self.zones)
        return self.cluster if inside or self.outside is None else self.outside

    def read(self, name: str):
        return self.route(name).read(name)
