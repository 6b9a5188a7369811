"""Composition: ``make_service(config, reactor)`` is the one place that knows every part
(DESIGN.md §2, layer 3).

A node is a ``MultiService`` holding the store, the zones, the responder, a UDP and a TCP
listener for every ``[dns] listen`` address and the sweep loop. Everything takes the
reactor it is given, keeps its own counters and holds no module-level state, so several
nodes can run in one process on one reactor (the litmus test of the seams).

The node is the single writer of its LMDB environment (DESIGN.md §3): it holds an
exclusive ``flock`` on ``<data_dir>/node.lock`` from ``make_service`` until it stops, and
``dmfdns records put|delete|import`` refuse to write while a node holds it.

The metrics registry and the HTTP API are wired by ``node_http``, the cluster sync by
``node_cluster``; both read their files before the lock is taken.
"""

import errno
import fcntl
import os
import pathlib

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer, error
from twisted.logger import Logger

from .config import Config, ConfigError, ListenAddress
from .dns.counters import DnsCounters
from .dns.responder import Responder, ResponderSettings
from .dns.server import (DNSDatagramProtocol, DNSStreamFactory, FailureLog, TransportCounters,
                         log as dns_log)
from .dns.zone import ZoneError, parse_zone
from .store.api import StoreError
from .group_commit import CommitLimits, GroupCommitter
from .stall_probe import StallProbe
from .store.lmdb_store import LmdbStore
from .store.credentials import Credentials
from .store.writes import WriteService
# http_preflight and cluster_preflight are also used by ``dmfdns serve``.
from .node_cluster import add_cluster, cluster_preflight
from .node_http import add_metrics_and_http, http_preflight

LOCK_FILE = "node.lock"
log = Logger(namespace="dmfdns.server")
store_log = Logger(namespace="dmfdns.store")
COOKIE_SECRET_KEY = "dns:cookie_secret"
COOKIE_SECRET_BYTES = 16


class NodeError(Exception):
    """The node cannot start; the message is one line for the operator."""


class NodeLocked(NodeError):
    """Another process (a running node) holds the data directory's lock."""


# --- the single-writer lock ---------------------------------------------------------------

class NodeLock:
    """An exclusive, non-blocking ``flock`` on ``<data_dir>/node.lock``.

    ``flock`` locks belong to the open file, so they are released when the holder exits
    however it exits, and two holders in one process conflict like two processes do.
    """

    def __init__(self, data_dir):
        self.path = pathlib.Path(data_dir) / LOCK_FILE
        self._fd = None

    def acquire(self, purpose: str = "") -> "NodeLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise NodeLocked(f"{self.path.parent} is in use by a running dmfdns node "
                                 f"(it holds {self.path}{_holder(self.path)})") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {purpose}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)     # closing the file drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _holder(path: pathlib.Path) -> str:
    try:
        words = path.read_text().split()
    except OSError:
        return ""
    return f", pid {words[0]}" if words and words[0].isdigit() else ""


# --- pieces -------------------------------------------------------------------------------

def load_zones(config: Config) -> list:
    """The parsed zone files of ``config``; ZoneError (file and line) or ConfigError."""
    zones = []
    for source in config.zones:
        try:
            text = source.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"zone file {source.file}: cannot read: {exc.strerror}") \
                from None
        except UnicodeDecodeError:
            raise ConfigError(f"zone file {source.file}: not UTF-8 text") from None
        zones.append(parse_zone(text, source=str(source.file)))
    origins = [zone.origin for zone in zones]
    duplicates = sorted({o for o in origins if origins.count(o) > 1})
    if duplicates:
        raise ConfigError(f"zone {duplicates[0]} is configured twice")
    return zones


def open_store(config: Config, *, readonly: bool = False) -> LmdbStore:
    """The node's LMDB store (created on first use unless ``readonly``)."""
    data_dir = config.node.data_dir
    if not readonly:
        data_dir.mkdir(parents=True, exist_ok=True)
    elif not (data_dir / "data.mdb").exists():
        raise StoreError(f"no dmfdns store at {data_dir} (nothing was written yet)")
    return LmdbStore(data_dir, map_size=None if readonly else config.store.map_size,
                     readonly=readonly, node_id=config.node.node_id)


def responder_settings(config: Config, cookie_secret: bytes | None) -> ResponderSettings:
    dns = config.dns
    return ResponderSettings(answer_ttl=dns.answer_ttl, edns_payload=dns.udp_max_payload,
                             nsid=dns.nsid.encode("utf-8") or None,
                             server_id=dns.server_id or None, version=dns.version or None,
                             cookie_secret=cookie_secret)


def cookie_secret(store) -> bytes:
    """The node's RFC 9018 cookie secret, made once and kept in the store so server
    cookies stay valid across restarts."""
    secret = store.meta_get(COOKIE_SECRET_KEY)
    if secret is None or len(secret) != COOKIE_SECRET_BYTES:
        secret = os.urandom(COOKIE_SECRET_BYTES)
        store.meta_set(COOKIE_SECRET_KEY, secret)
    return secret


class Listener(service.Service):
    """One bound socket (UDP or TCP) for one configured address.

    Port 0 picks a free port; a UDP listener given ``same_port_as`` (its address's TCP
    listener) takes the port that one got, so UDP and TCP share it as resolvers expect
    (they retry a truncated answer over TCP on the same port). TCP binds first because a
    Twisted factory may listen on several ports while a DatagramProtocol may not, so it is
    the TCP side that moves when the UDP port is taken."""

    SAME_PORT_ATTEMPTS = 20

    def __init__(self, reactor, kind: str, address: ListenAddress, protocol_or_factory,
                 counters: TransportCounters | None, same_port_as: "Listener | None" = None,
                 backlog: int | None = None):
        self.reactor = reactor
        self.backlog = backlog  # TCP listen(2) queue; None: Twisted's default (50)
        self.kind = kind
        self.address = address
        self.target = protocol_or_factory
        self.counters = counters
        self.same_port_as = same_port_as
        self.port = None
        self.setName(f"dns-{kind} {address}")

    def privilegedStartService(self):
        # Binding here (before privileges would be dropped) also makes a failure to bind
        # surface synchronously, as NodeError, from startService.
        partner = self.same_port_as
        if self.address.port != 0 or partner is None or partner.port is None:
            self.port = self._listen(self.address.port)
        else:
            self.port = self._listen_on_partner_port(partner)
        service.Service.privilegedStartService(self)

    def _listen_on_partner_port(self, partner: "Listener"):
        for _ in range(self.SAME_PORT_ATTEMPTS):
            try:
                return self._listen(partner.bound.port)
            except NodeError:
                partner.rebind()   # that port is taken for us: both move to a new one
        return self._listen(partner.bound.port)

    def _listen(self, port: int):
        listen = self.reactor.listenUDP if self.kind == "udp" else self.reactor.listenTCP
        options = {"backlog": self.backlog} if self.kind != "udp" and self.backlog else {}
        try:
            return listen(port, self.target, interface=self.address.host, **options)
        except error.CannotListenError as exc:
            reason = getattr(exc.socketError, "strerror", None) or str(exc.socketError)
            raise NodeError(f"cannot listen on {self.address} ({self.kind.upper()}): "
                            f"{reason}") from None

    def rebind(self) -> None:
        """Move to another free port (a TCP listener on a configured port 0)."""
        old, self.port = self.port, self._listen(self.address.port)
        old.stopListening()

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        service.Service.startService(self)

    def stopService(self):
        service.Service.stopService(self)
        port, self.port = self.port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return None

    @property
    def bound(self) -> ListenAddress | None:
        """The address actually bound (with the real port), or None when not listening."""
        if self.port is None:
            return None
        return ListenAddress(self.address.host, self.port.getHost().port)


class Sweeper:
    """Removes expired values in bounded batches: one batch per tick, and while a batch
    comes back full the next one follows on the next reactor turn (never a loop that holds
    the reactor). A failing batch is logged and counted; the loop goes on."""

    def __init__(self, store, clock, batch: int):
        self.store = store
        self.clock = clock
        self.batch = batch
        self.removed = 0
        self.failures = 0
        self._follow_up = None

    def tick(self) -> None:
        self._follow_up = None
        try:
            removed = self.store.sweep(self.clock.seconds(), self.batch)
        except Exception:
            self.failures += 1
            store_log.failure("sweep failed; retrying at the next tick")
            return
        self.removed += removed
        if removed >= self.batch:
            self._follow_up = self.clock.callLater(0, self.tick)

    def stop(self) -> None:
        if self._follow_up is not None and self._follow_up.active():
            self._follow_up.cancel()
        self._follow_up = None


# --- the node -----------------------------------------------------------------------------

class Node(service.MultiService):
    """A running dmfdns node. Attributes other parts (HTTP, metrics, sync) use:
    ``config``, ``reactor``, ``store``, ``zones``, ``responder``, ``dns_counters`` (the
    responder's), ``writes`` (the one write service), ``committer`` (its group commit),
    ``credentials`` (tokens and TSIG keys), ``listeners``, ``sweeper`` and
    ``stall_probe``."""

    def __init__(self, config: Config, reactor, *, lock: NodeLock, store, zones,
                 responder):
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.lock = lock
        self.store = store
        self.zones = zones
        self.responder = responder
        self.dns_counters = responder.counters
        self.listeners: list[Listener] = []
        self.sweeper = Sweeper(store, reactor, config.store.sweep_batch)
        self.stall_probe = StallProbe(reactor)
        self.store_open = True

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)
        listener.setServiceParent(self)

    def listen(self, kind: str, address: ListenAddress, target, counters=None,
               **options) -> Listener:
        """Add a ``Listener`` of ``kind`` for ``address`` serving ``target``."""
        listener = Listener(self.reactor, kind, address, target, counters, **options)
        self.add_listener(listener)
        return listener

    def dns_addresses(self, kind: str) -> list[ListenAddress]:
        """Bound addresses of the ``"udp"`` or ``"tcp"`` listeners, real ports included."""
        return [l.bound for l in self.listeners if l.kind == kind and l.bound is not None]

    def transport_counters(self) -> dict:
        """``{(kind, "host:port"): TransportCounters}`` of every listener."""
        return {(l.kind, str(l.address)): l.counters for l in self.listeners}

    def readiness(self) -> dict:
        """What /readyz reports: the store is open and every listener is bound."""
        bound = all(l.bound is not None for l in self.listeners)
        return {"store": self.store_open, "listeners": bound and self.running == 1}

    @property
    def ready(self) -> bool:
        return all(self.readiness().values())

    def startService(self):
        self.stall_probe.start()
        try:
            super().startService()
        except BaseException:
            # A listener failed to bind: release the ones already bound before reporting.
            for listener in self.listeners:
                if listener.port is not None:
                    listener.stopService()
            self.running = 0
            self.stall_probe.stop()
            raise

    @defer.inlineCallbacks
    def stopService(self):
        self.sweeper.stop()
        self.stall_probe.stop()
        yield super().stopService()
        committer = getattr(self, "committer", None)
        if committer is not None:
            committer.stop()       # what was admitted is committed before the store closes
        self.close()

    def close(self) -> None:
        """Close the store and release the data directory (idempotent)."""
        if self.store_open:
            self.store_open = False
            self.store.close()
        self.lock.release()


def make_service(config: Config, reactor) -> Node:
    """Build a node from ``config`` on ``reactor``: lock the data directory, open the
    store, load the zones, build the responder and the listeners. Nothing is bound until
    the service starts. Raises NodeLocked, StoreError, ZoneError or ConfigError."""
    zones = load_zones(config)
    http_secrets = http_preflight(config)
    cluster = cluster_preflight(config, [zone.origin for zone in zones])
    lock = NodeLock(config.node.data_dir).acquire("serve")
    try:
        store = open_store(config)
    except BaseException:
        lock.release()
        raise
    try:
        settings = responder_settings(config, cookie_secret(store))
        responder = Responder(zones, store, settings, DnsCounters(),
                              on_error=FailureLog(reactor, dns_log).failure)
    except BaseException:
        store.close()
        lock.release()
        raise
    node = Node(config, reactor, lock=lock, store=store, zones=zones, responder=responder)
    node.credentials = Credentials(store)
    node.writes = WriteService(
        store, zones=[zone.origin for zone in zones], operator_key=http_secrets.operator_key,
        cluster_base=config.cluster.base or None,
        observe=lambda path, accepted, reason: node.metrics.observe_write(path, accepted,
                                                                           reason))
    node.committer = GroupCommitter(node.writes.commit, reactor, CommitLimits(
        max_records=config.store.commit_max_records, max_delay=config.store.commit_delay))
    observe = responder.counters.observe_duration
    for address in config.dns.listen:
        udp_counters, tcp_counters = TransportCounters(), TransportCounters()
        udp = DNSDatagramProtocol(responder, reactor, max_udp=config.dns.udp_max_payload,
                                  counters=udp_counters, observe_duration=observe)
        tcp = DNSStreamFactory(responder, reactor, idle_timeout=config.dns.tcp_idle_timeout,
                               max_connections=config.dns.max_tcp_connections,
                               max_per_client=config.dns.max_tcp_connections_per_client,
                               max_message=config.dns.max_tcp_message,
                               counters=tcp_counters, observe_duration=observe)
        tcp_listener = node.listen("tcp", address, tcp, tcp_counters)
        node.listen("udp", address, udp, udp_counters, same_port_as=tcp_listener)
    add_metrics_and_http(node, http_secrets)
    add_cluster(node, cluster)
    sweep = TimerService(config.store.sweep_interval, node.sweeper.tick)
    sweep.clock = reactor
    sweep.setName("sweep")
    sweep.setServiceParent(node)
    return node
