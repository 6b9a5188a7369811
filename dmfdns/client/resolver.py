"""A pool of DNS resolvers with per-server health, failover and exponential backoff.

Every read tries the servers one after the other until one gives an answer (NOERROR or
NXDOMAIN; ``dnsquery`` treats everything else as a failure). A server that fails is cooled
down for ``backoff * 2**(failures - 1)`` seconds (capped at ``max_backoff``) and tried only
after the healthy ones, oldest cool-down first, so the pool never refuses to try anybody. When
its cool-down has passed it is back in the first tier; the first answer it gives makes it
healthy again. The reference pool (docs/compatibility.md §5) has a fixed 60 s cool-down; doubling
keeps a server that is really gone from costing one timeout per minute.

Time comes from the injected clock, so the health logic is tested with ``task.Clock``.
"""

from dataclasses import dataclass

from twisted.internet import defer

DEFAULT_BACKOFF = 5.0
DEFAULT_MAX_BACKOFF = 300.0


class ReadError(Exception):
    """No server could answer a read."""


@dataclass
class ServerHealth:
    server: object
    failures: int = 0           # consecutive failures
    retry_at: float = 0.0       # before this, the server is only tried after healthy ones
    answers: int = 0
    last_error: str = ""

    def preferred(self, now: float) -> bool:
        return self.failures == 0 or now >= self.retry_at


class ResolverPool:
    """``read(name)`` -> Deferred list of TXT values ([] for no such name or no TXT)."""

    def __init__(self, servers, client, clock, *, backoff: float = DEFAULT_BACKOFF,
                 max_backoff: float = DEFAULT_MAX_BACKOFF):
        if not servers:
            raise ValueError("a resolver pool needs at least one server")
        self.health = [ServerHealth(server) for server in servers]
        self.client, self.clock = client, clock
        self.backoff, self.max_backoff = backoff, max_backoff

    def order(self) -> list[ServerHealth]:
        """Healthy (or cooled-down-enough) servers in configured order, then the rest,
        the one whose cool-down ends first leading."""
        now = self.clock.seconds()
        first = [h for h in self.health if h.preferred(now)]
        rest = sorted((h for h in self.health if not h.preferred(now)),
                      key=lambda h: h.retry_at)
        return first + rest

    @defer.inlineCallbacks
    def read(self, name: str):
        errors = []
        for health in self.order():
            try:
                answer = yield self.client.query_txt(health.server, name)
            except defer.CancelledError:
                raise
            except Exception as exc:  # QueryFailed and socket errors alike
                self._failed(health, exc)
                errors.append(f"{health.server}: {exc}")
                continue
            self._answered(health)
            return list(answer.values)
        raise ReadError(f"no resolver answered for {name}: " + "; ".join(errors))

    def _failed(self, health: ServerHealth, exc: Exception) -> None:
        health.failures += 1
        health.last_error = str(exc)
        delay = min(self.max_backoff, self.backoff * 2 ** (health.failures - 1))
        health.retry_at = self.clock.seconds() + delay

    @staticmethod
    def _answered(health: ServerHealth) -> None:
        health.failures = 0
        health.retry_at = 0.0
        health.answers += 1
        health.last_error = ""
