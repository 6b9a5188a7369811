"""The background re-signer: keeps the RRSIGs stored with each name (``dns.rrsig_store``)
fresh, so positive DO answers stay a read and a splice.

Writes sign what they change (``store.batch``); what no write brings is found here: the
validity window moving on (every ``refresh`` period), keys that changed (a rollover or a
reload), a zone just turned signed, names written while nothing signed (``dmfdns records``
on a stopped node), and names whose values expire faster than the steps signed ahead.
A pass walks the name table in key order, ``batch`` names a reactor turn (one short read
transaction, and the check of each record: about 3 ms for 500 names), at most ``rate``
names a second while it finds nothing to sign (an idle pass over a million names takes
about 200 s and 3 % of a CPU), and hands what is stale to a thread in groups of ``group``
names, going on at once after them: each group is one write transaction that reads the
blobs again and signs them (``LmdbStore`` serialises it with the group commits; a group of
64 Ed25519 names holds the write lock a few milliseconds). The next pass starts
``interval`` seconds after one ends, or at once after ``poke`` (new keys). Until a name is
re-signed, the responder signs its answers on the fly: a stale record is never served.
"""

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from .dns import rrsig_store
from .proto.names import from_reversed_key

log = Logger(namespace="dmfdns.dnssec")


class Resigner(service.Service):
    """Re-signs ``store``'s stale records with ``writer`` (the store's ``WriteSigner``) on
    ``clock``; ``run(fn, *args)`` runs a write in a thread (None: inline). Counters:
    ``scanned`` names, ``resigned`` records stored, ``passes`` completed, ``failures``."""

    def __init__(self, store, writer, clock, run=None, *, batch: int = 500,
                 group: int = 64, interval: float = 60.0, rate: float = 5000.0):
        self.store, self.writer, self.clock, self._run = store, writer, clock, run
        self.batch, self.group, self.interval = batch, group, interval
        # Names checked a second at most while nothing needs signing: a batch costs about
        # 6 µs a name, so an idle pass over a large zone takes about 3 % of a CPU.
        self.rate = rate
        self.scanned = self.resigned = self.passes = self.failures = 0
        self._after = b""
        self._call = None
        self._busy = None               # the Deferred of a re-signing write in a thread

    def startService(self):
        super().startService()
        self._schedule(0)

    def stopService(self):
        super().stopService()
        self._cancel()
        return self._busy if self._busy is not None else defer.succeed(None)

    def poke(self) -> None:
        """Start a pass now (the keys changed); a pass under way goes on."""
        if self.running and self._busy is None and self._after == b"":
            self._schedule(0)

    def _schedule(self, delay: float) -> None:
        self._cancel()
        self._call = self.clock.callLater(delay, self.step)

    def _cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def step(self) -> None:
        """One batch of the pass: scan, then re-sign what is stale, then the next."""
        self._call = None
        if not self.running:
            return
        if not self.writer.active():
            self._end_pass()                # nothing is signed: no scan
            return
        now = self.clock.seconds()
        try:
            found = self.store.signing_scan(self._after, self.batch)
            stale = [key for key, blob, record in found if self._stale(key, blob, record, now)]
        except Exception:
            self.failures += 1
            log.failure("the re-signer's scan failed; the next pass starts over")
            self._end_pass()
            return
        self.scanned += len(found)
        last = len(found) < self.batch
        self._after = b"" if last else found[-1][0]
        if last:
            self.passes += 1
        if not stale:
            self._next(last, len(found) / self.rate)
            return
        self._busy = self._resign(stale, now)
        self._busy.addBoth(self._resigned, last)

    def _stale(self, key, blob, record, now) -> bool:
        name = from_reversed_key(key)
        signer = self.writer.zone_signer(name)
        if signer is None or not self.writer.signs(name):
            return False
        return rrsig_store.stale(record, self.writer.profile(signer), blob,
                                 round(now * 1000), signer.window(now)[0])

    @defer.inlineCallbacks
    def _resign(self, stale, now):
        for at in range(0, len(stale), self.group):
            keys = stale[at:at + self.group]
            if self._run is None:
                stored = self.store.resign(keys, now)
            else:
                stored = yield self._run(self.store.resign, keys, now)
            self.resigned += stored

    def _resigned(self, outcome, last: bool) -> None:
        self._busy = None
        if isinstance(outcome, Failure):
            self.failures += 1
            log.failure("re-signing failed; the next pass tries again", outcome)
            self._end_pass()
            return
        self._next(last)

    def _next(self, last: bool, pause: float = 0.0) -> None:
        if self.running:
            self._schedule(self.interval if last else pause)

    def _end_pass(self) -> None:
        self._after = b""
        if self.running:
            self._schedule(self.interval)


def resign_interval(signers: dict) -> float:
    """Seconds between passes: a quarter of the shortest refresh period, at most a minute
    (a value expiring past the steps signed ahead waits this long at most)."""
    refresh = [signer.settings.refresh for signer in signers.values()]
    return max(0.05, min([60.0] + [period / 4 for period in refresh]))
