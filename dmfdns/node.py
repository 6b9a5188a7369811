"""Composition: ``make_service(config, reactor)`` is the one place that knows every part
(DESIGN.md §2, layer 3).

A node is a ``MultiService`` holding the store, the zones, the responder, a UDP and a TCP
listener for every ``[dns] listen`` address and the sweep loop. Everything takes the
reactor it is given, keeps its own counters and holds no module-level state, so several
nodes can run in one process on one reactor (the litmus test of the seams).

The node is the single writer of its LMDB environment (DESIGN.md §3): it holds an
exclusive ``flock`` on ``<data_dir>/node.lock`` from ``make_service`` until it stops, and
``dmfdns records put|delete|import`` refuse to write while a node holds it.
"""

import errno
import fcntl
import os
import pathlib
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer, error
from twisted.logger import Logger

from .config import (Config, ConfigError, ListenAddress, read_operator_key,
                     read_operator_token)
from .dns.counters import DnsCounters
from .dns.responder import Responder, ResponderSettings
from .dns.server import DNSDatagramProtocol, DNSStreamFactory, TransportCounters
from .dns.zone import ZoneError, parse_zone
from .http.auth import MULTI_TENANT, WriteAuth
from .http.site import OpenBindRefused, check_bind, make_site
from .http.tokens import TokenFile
from .metrics import NodeMetrics
from .store.api import StoreError
from .store.identities import identity_lookup
from .store.lmdb_store import LmdbStore
from . import __version__
from .config import read_manifest_wire, read_sync_token
from .http.ratelimit import TokenBucketLimiter
from .http.sync_resources import SyncApi
from .proto.keyfile import parse_seed
from .proto.signing import Signer
from .sync.anti_entropy import Budget
from .sync.service import ClusterSettings, ClusterSync, HeartbeatSettings
from .sync.sync_metrics import SyncCollector

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
    backlog = None  # TCP listen(2) queue; None: Twisted's default (50)

    def __init__(self, reactor, kind: str, address: ListenAddress, protocol_or_factory,
                 counters: TransportCounters, same_port_as: "Listener | None" = None):
        self.reactor = reactor
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
    responder's), ``listeners`` and ``sweeper``."""

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
        self.store_open = True

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)
        listener.setServiceParent(self)

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
        try:
            super().startService()
        except BaseException:
            # A listener failed to bind: release the ones already bound before reporting.
            for listener in self.listeners:
                if listener.port is not None:
                    listener.stopService()
            self.running = 0
            raise

    @defer.inlineCallbacks
    def stopService(self):
        self.sweeper.stop()
        yield super().stopService()
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
        responder = Responder(zones, store, settings, DnsCounters())
    except BaseException:
        store.close()
        lock.release()
        raise
    node = Node(config, reactor, lock=lock, store=store, zones=zones, responder=responder)
    observe = responder.counters.observe_duration
    for address in config.dns.listen:
        udp_counters, tcp_counters = TransportCounters(), TransportCounters()
        udp = DNSDatagramProtocol(responder, reactor, max_udp=config.dns.udp_max_payload,
                                  counters=udp_counters, observe_duration=observe)
        tcp = DNSStreamFactory(responder, reactor, idle_timeout=config.dns.tcp_idle_timeout,
                               max_connections=config.dns.max_tcp_connections,
                               max_message=config.dns.max_tcp_message,
                               counters=tcp_counters, observe_duration=observe)
        tcp_listener = Listener(reactor, "tcp", address, tcp, tcp_counters)
        node.add_listener(tcp_listener)
        node.add_listener(Listener(reactor, "udp", address, udp, udp_counters,
                                   same_port_as=tcp_listener))
    add_metrics_and_http(node, http_secrets)
    add_cluster(node, cluster)
    sweep = TimerService(config.store.sweep_interval, node.sweeper.tick)
    sweep.clock = reactor
    sweep.setName("sweep")
    sweep.setServiceParent(node)
    return node


# --- metrics and the HTTP API ---------------------------------------------------------------

HTTP_LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class HttpSecrets:
    """What the HTTP API reads from files before the node takes its lock."""

    operator_token: str
    operator_key: bytes | None  # the pinned key that must sign cluster.<base>


def http_preflight(config: Config) -> HttpSecrets:
    """The operator token and pinned operator key, after refusing an ``open`` write API
    beyond loopback (checked again here, not only by the config loader, because this is
    where sockets get bound)."""
    for address in config.http.listen:
        try:
            check_bind(config.http.auth_mode, address.host,
                       allow_open_non_loopback=config.http.allow_open_non_loopback)
        except OpenBindRefused as exc:
            raise ConfigError(f"[http] {exc}") from None
    return HttpSecrets(read_operator_token(config.http), read_operator_key(config.cluster))


def add_metrics_and_http(node: Node, secrets: HttpSecrets) -> None:
    """Give ``node`` its metrics registry (``node.metrics``), shared by the DNS counters and
    the HTTP site, and an HTTP listener per ``[http] listen`` address (``node.http``)."""
    config, reactor = node.config, node.reactor
    node.metrics = NodeMetrics(CollectorRegistry())
    node.metrics.watch_store(node.store)
    node.metrics.watch_dns(node.dns_counters)
    node.metrics.watch_dns_transports(lambda: _listener_counters(node))
    node.metrics.watch_sweeper(lambda: node.sweeper.removed)
    http = config.http
    tokens = TokenFile(config.node.data_dir) if http.auth_mode == MULTI_TENANT else None
    operator_token = secrets.operator_token
    auth = WriteAuth(http.auth_mode, operator_token=operator_token, tokens=tokens,
                     clock=reactor.seconds)
    metrics_tokens = (http.metrics_token, operator_token) if http.metrics_token else ()
    node.http = make_site(
        store=node.store, zones=[zone.origin for zone in node.zones], clock=reactor,
        metrics=node.metrics, auth=auth, rate_limit=http.rate_limit,
        rate_burst=http.rate_burst, trusted_proxies=http.trusted_proxies,
        max_body_bytes=http.max_body_bytes, max_connections=http.max_connections,
        idle_timeout=http.idle_timeout, metrics_tokens=metrics_tokens,
        operator_key=secrets.operator_key, cluster_base=config.cluster.base or None,
        lookup_identities=identity_lookup(node.store, reactor.seconds))
    node.http.readiness.require("store", lambda: node.readiness()["store"])
    node.http.readiness.require("listeners", lambda: node.readiness()["listeners"])
    for address in http.listen:
        listener = Listener(reactor, "http", address, node.http.site, None)
        # A connection flood must queue in the kernel rather than see dropped SYNs while the
        # site evicts idle connections to make room (dmfdns.http.channel).
        listener.backlog = HTTP_LISTEN_BACKLOG
        node.add_listener(listener)


def _listener_counters(node: Node) -> dict:
    """``{"udp": [TransportCounters, ...], "tcp": [...]}`` of the DNS listeners."""
    grouped = {}
    for listener in node.listeners:
        if listener.kind in ("udp", "tcp"):
            grouped.setdefault(listener.kind, []).append(listener.counters)
    return grouped


# --- the cluster: sync endpoints, anti-entropy, gossip, heartbeat ----------------------------

def cluster_preflight(config: Config, zones: list) -> ClusterSettings:
    """The cluster settings, with every ``[cluster]`` file read before the node takes its
    lock (a ConfigError names the file)."""
    cluster = config.cluster
    return ClusterSettings(
        node_id=config.node.node_id, zones=tuple(zones), sync_token=read_sync_token(cluster),
        base=cluster.base or None, operator_key=read_operator_key(cluster),
        initial_manifest=read_manifest_wire(cluster), static_peers=cluster.peers,
        interval=cluster.sync_interval,
        budget=Budget(page_limit=cluster.page_limit, max_pages=cluster.max_pages_per_tick,
                      max_records=cluster.max_records_per_tick, seconds=cluster.tick_budget),
        peer_timeout=cluster.peer_timeout, max_response_bytes=cluster.max_response_bytes,
        fullset_interval=cluster.fullset_interval, heartbeat=_heartbeat_settings(config, zones))


def _heartbeat_settings(config: Config, zones: list) -> HeartbeatSettings | None:
    cluster = config.cluster
    if not cluster.heartbeat_endpoint or not zones:
        return None
    try:
        seed = parse_seed(cluster.heartbeat_key_file.read_bytes())
    except OSError as exc:
        raise ConfigError(f"[cluster] heartbeat_key_file {cluster.heartbeat_key_file}: "
                          f"cannot read: {exc.strerror}") from None
    if seed is None:
        raise ConfigError(f"[cluster] heartbeat_key_file {cluster.heartbeat_key_file}: must "
                          "hold a 32-byte seed (64 hex characters)")
    return HeartbeatSettings(Signer(seed), cluster.heartbeat_endpoint, zones[0],
                             f"dmfdns-{__version__}", cluster.heartbeat_interval,
                             int(cluster.heartbeat_ttl))


def add_cluster(node: Node, settings: ClusterSettings) -> None:
    """Give ``node`` its ``ClusterSync`` (``node.cluster``) and mount ``/v1/sync/*``."""
    reactor, http = node.reactor, node.config.http

    def on_write(accepted: bool, reason) -> None:
        if accepted:
            node.metrics.write_accepted("sync")
        else:
            node.metrics.write_refused("sync", reason)
    node.cluster = ClusterSync(node.store, reactor, settings, on_write=on_write)
    node.cluster.setServiceParent(node)
    SyncApi(store=node.store, token=settings.sync_token,
            limiter=TokenBucketLimiter(http.rate_limit, http.rate_burst, reactor.seconds),
            current_manifest=node.cluster.current_manifest,
            index=node.cluster.index if settings.sync_token else None).mount(node.http)
    node.metrics.registry.register(SyncCollector(node.cluster))
