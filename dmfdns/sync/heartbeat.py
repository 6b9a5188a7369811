"""Publishing this node's heartbeat at ``_dnsmesh-heartbeat.<zone>`` (docs/compatibility.md §4.3).

Each tick signs a fresh heartbeat (``ts`` = now, ``exp`` = now + ttl) with the operator key
and stores it, then deletes the heartbeat this node published before (by value; the
tombstone replicates, so the old one leaves every node). The first tick also removes stale
heartbeats signed by this key for this endpoint (left by a crash). Other operators' wires in
a shared zone are left alone. The endpoint must be a public host name: ``proto.heartbeat``
refuses loopback and private addresses, because other operators' crawlers connect to it.

A tick's writes (three durable commits) run through ``run_write``: in a node, where its
other commits run, off the reactor thread, since a commit waits on the disk.
"""

from twisted.internet import defer
from twisted.logger import Logger

from ..proto import heartbeat, owners
from ..proto.signing import Signer

META_KEY = "heartbeat:last"
log = Logger(namespace="dmfdns.heartbeat")


class HeartbeatPublisher:
    def __init__(self, store, clock, *, signer: Signer, endpoint: str, zone: str,
                 version: str, ttl: int, capabilities: int = 0, run_write=None):
        problem = heartbeat.endpoint_problem(endpoint)
        if problem:
            raise ValueError(f"heartbeat endpoint {endpoint!r}: {problem}")
        self.store = store
        self.clock = clock
        self.run_write = run_write or defer.maybeDeferred
        self.signer = signer
        self.endpoint = endpoint
        self.zone = zone
        self.owner = owners.heartbeat(zone)
        self.version = version[:heartbeat.MAX_VERSION]
        self.ttl = int(ttl)
        self.capabilities = capabilities
        self.published = 0
        self.failures = 0
        self._swept = False

    def tick(self) -> defer.Deferred:
        """Publish a fresh heartbeat; fires when it is stored. A failure is logged and
        counted, never raised (the Deferred never fails)."""
        return self.run_write(self._publish, self.clock.seconds()).addErrback(self._failed)

    def _failed(self, failure) -> None:
        self.failures += 1
        log.failure("publishing the heartbeat failed; retrying next interval", failure)

    def _publish(self, now: float) -> None:
        ts = int(now)
        value = heartbeat.sign(self.endpoint, self.signer.public_key, self.version,
                               self.capabilities, self.zone, ts, ts + self.ttl, self.signer)
        previous = self.store.meta_get(META_KEY)
        self.store.put(self.owner, value, expiry=ts + self.ttl, now=now)
        self.store.meta_set(META_KEY, value.encode("ascii"))
        self.published += 1
        if previous and previous.decode("ascii", "replace") != value:
            self.store.delete(self.owner, previous.decode("ascii", "replace"), now=now)
        if not self._swept:
            self._sweep_orphans(value, now)
            self._swept = True

    def _sweep_orphans(self, current: str, now: float) -> None:
        for stored in self.store.get(self.owner, now):
            record = heartbeat.decode(stored.value)
            if (stored.value != current and record is not None
                    and record.operator_spk == self.signer.public_key
                    and record.endpoint == self.endpoint):
                self.store.delete(self.owner, stored.value, now=now)
