"""Sending NOTIFY (RFC 1996) to a zone's secondaries after every change, over UDP.

The notifier watches the store's generation (an in-memory integer on the writing handle)
every ``poll`` seconds. When it has moved, every zone with secondaries gets a NOTIFY round,
at most one per ``min_interval`` (coalescing: a burst of writes is one NOTIFY, as NSD's
``xfrd-reload-timeout`` and BIND's ``notify-rate`` expect). Each (zone, secondary) NOTIFY
is resent with exponential backoff (``retry`` doubling up to ``retry_max``, RFC 1996
section 3.6) until a matching acknowledgement arrives or a newer round replaces it.
Everything is counted; nothing blocks the reactor.
"""

import os
import struct
from dataclasses import dataclass

from twisted.application import service
from twisted.internet import defer, protocol, task
from twisted.logger import Logger

from . import notify

log = Logger(namespace="dmfdns.notify")


@dataclass
class NotifyCounters:
    sent: int = 0           # NOTIFY datagrams sent, first attempts and retries
    retries: int = 0
    acknowledged: int = 0
    failed: int = 0         # answers with an error rcode or a bad TSIG (retried)
    send_errors: int = 0
    rounds: int = 0

    def as_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class _Pending:
    zone: object
    target: tuple
    key: object
    serial: int
    ident: int
    mac: bytes | None = None
    attempts: int = 0
    due: float = 0.0


class _Socket(protocol.DatagramProtocol):
    noisy = False

    def __init__(self, notifier: "Notifier"):
        self.notifier = notifier

    def datagramReceived(self, data, addr):
        self.notifier.answer(data, addr)


class Notifier(service.Service):
    """NOTIFY for ``targets``: ``[(zone, policy)]`` with ``policy.notify`` not empty. One
    UDP socket per address family the secondaries use, bound to ``bind_hosts[family]``
    (4 or 6)."""

    def __init__(self, reactor, store, targets, *, poll: float = 0.2,
                 min_interval: float = 1.0, retry: float = 1.0, retry_max: float = 60.0,
                 bind_hosts=None):
        self.reactor = reactor
        self.store = store
        self.targets = [(zone, policy) for zone, policy in targets if policy.notify]
        self.poll, self.min_interval = poll, min_interval
        self.retry, self.retry_max = retry, retry_max
        self.bind_hosts = dict(bind_hosts or {4: "127.0.0.1", 6: "::1"})
        self.counters = NotifyCounters()
        self.pending: dict[tuple, _Pending] = {}
        self._notified_generation = None
        self._last_round = None
        self._ports = {}                # family -> listening UDP port
        self._loop = None
        self.setName("notify")

    def startService(self):
        super().startService()
        families = {_family(target[0]) for _, policy in self.targets
                    for target in policy.notify}
        for family in sorted(families):
            self._ports[family] = self.reactor.listenUDP(
                0, _Socket(self), interface=self.bind_hosts[family])
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.reactor
        self._loop.start(self.poll, now=True)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        ports, self._ports = self._ports, {}
        return defer.DeferredList([defer.maybeDeferred(port.stopListening)
                                   for port in ports.values()])

    def tick(self) -> None:
        try:
            self._maybe_round()
            self._resend_due()
        except Exception:
            log.failure("NOTIFY tick failed; trying again at the next one")

    def _maybe_round(self) -> None:
        generation = self.store.generation()
        now = self.reactor.seconds()
        if generation == self._notified_generation:
            return
        if self._last_round is not None and now - self._last_round < self.min_interval:
            return
        self._notified_generation, self._last_round = generation, now
        self.counters.rounds += 1
        for zone, policy in self.targets:
            serial = (zone.serial + generation) % 2**32
            for target in policy.notify:
                self.pending[(zone.origin, target)] = _Pending(
                    zone, target, policy.notify_key, serial, _new_id(), due=now)

    def _resend_due(self) -> None:
        now = self.reactor.seconds()
        for item in list(self.pending.values()):
            if item.due <= now:
                self._send(item, now)

    def _send(self, item: _Pending, now: float) -> None:
        packed, item.mac = notify.message(item.ident, item.zone, item.serial, item.key,
                                          now=now)
        if item.attempts:
            self.counters.retries += 1
        item.attempts += 1
        item.due = now + min(self.retry * 2 ** (item.attempts - 1), self.retry_max)
        try:
            self._ports[_family(item.target[0])].write(packed, item.target)
        except OSError as error:
            self.counters.send_errors += 1
            log.warn("NOTIFY to {target} failed: {error}", target=item.target, error=error)
            return
        self.counters.sent += 1

    def answer(self, data: bytes, addr) -> None:
        """A datagram from a secondary: the acknowledgement of a pending NOTIFY or noise."""
        if len(data) < 2:
            return
        ident = struct.unpack_from(">H", data)[0]
        for key, item in list(self.pending.items()):
            if item.ident != ident or tuple(addr[:2]) != tuple(item.target):
                continue
            verdict = notify.acknowledgement(data, ident, item.zone.origin, item.key,
                                             item.mac, now=self.reactor.seconds())
            if verdict is None:
                continue
            if verdict == "ok":
                self.counters.acknowledged += 1
                del self.pending[key]
            else:
                self.counters.failed += 1
                log.warn("NOTIFY {zone} to {target} answered with {why}; retrying",
                         zone=item.zone.origin, target=item.target, why=verdict)
            return


def _family(host: str) -> int:
    return 6 if ":" in host else 4


def _new_id() -> int:
    return struct.unpack(">H", os.urandom(2))[0]
