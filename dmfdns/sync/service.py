"""The cluster side of a node as one service: gossip, anti-entropy, full-set index, heartbeat.

``ClusterSync`` takes plain settings (``make_service`` builds them from ``[cluster]``), the
node's store and a clock, so several nodes can run it on one reactor. Each tick (the
``SyncLoop``: every interval, and at once while a peer is behind): offer the store's
``cluster.<base>`` values and every peer's manifest to the ``ManifestKeeper`` (gossip),
follow the peers of the manifest in force, then run the anti-entropy tick. A tick's
Deferred never fails, so the loop never stops; ticks never overlap.
"""

from dataclasses import dataclass

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import Logger

from ..proto.admission import Limits
from ..proto.signing import Signer
from ..slicing import Slicer
from ..store.writes import WriteService
from .anti_entropy import AntiEntropy, Budget, Peer
from .fullset import FullSetIndex
from .gossip import ManifestKeeper
from .heartbeat import HeartbeatPublisher
from ..outbound.client import HttpClient
from ..outbound.tls import plain_http_outside
from .peer_client import PeerClient, PeerError

log = Logger(namespace="dmfdns.sync")
CATCH_UP_PAUSE = 0.05   # between ticks while a peer is behind: the reactor's other work first


@dataclass(frozen=True)
class HeartbeatSettings:
    signer: Signer
    endpoint: str
    zone: str
    version: str
    interval: float = 300.0
    ttl: int = 86400


@dataclass(frozen=True)
class ClusterSettings:
    node_id: str
    zones: tuple
    sync_token: str = ""
    base: str | None = None
    operator_key: bytes | None = None
    initial_manifest: str | None = None
    static_peers: tuple = ()
    interval: float = 10.0
    budget: Budget = Budget()
    peer_timeout: float = 5.0
    max_response_bytes: int = 16 * 2**20
    fullset_interval: float = 60.0
    limits: Limits = Limits()
    heartbeat: HeartbeatSettings | None = None
    tls: object = None            # an outbound.tls.TlsPolicy; None: the system trust store
    allow_plain_http_peers: bool = False


class ClusterSync(service.MultiService):
    """Attributes others read: ``keeper`` (None without a pinned key and base),
    ``anti_entropy``, ``index``, ``heartbeat`` (None when off), ``settings``.
    ``run_write`` runs anti-entropy's store writes where the node's commits run
    (``GroupCommitter.call``; None: inline)."""

    def __init__(self, store, clock, settings: ClusterSettings, *, transport=None,
                 writes: WriteService | None = None, run_write=None):
        super().__init__()
        self.setName("cluster")
        self.store = store
        self.clock = clock
        self.settings = settings
        self.transport = transport or HttpClient(
            clock, timeout=settings.peer_timeout, max_bytes=settings.max_response_bytes,
            tls=settings.tls)
        # The one budget of reactor time per turn that every sliced job of the node
        # shares: the index build, the diff and admission of pulled pages, the parse of a
        # peer's answers, and (make_cluster) the serving of digests and pulls.
        self.slicer = Slicer(clock)
        self.index = FullSetIndex(store, slicer=self.slicer)
        self.keeper = None
        if settings.operator_key is not None and settings.base:
            self.keeper = ManifestKeeper(store, node_id=settings.node_id, base=settings.base,
                                         operator_key=settings.operator_key,
                                         max_ttl=settings.limits.max_ttl,
                                         on_change=lambda manifest: self._follow_peers())
        if writes is None:     # a cluster on its own store (tests): its own write service
            writes = WriteService(store, zones=settings.zones, limits=settings.limits,
                                  operator_key=settings.operator_key, cluster_base=settings.base)
        self.anti_entropy = AntiEntropy(
            store, clock, client_for=self._client, writes=writes, budget=settings.budget,
            index=self.index, fullset_interval=settings.fullset_interval,
            deadline_slack=2 * settings.peer_timeout, run_write=run_write,
            slicer=self.slicer)
        self.gossip_errors = 0
        self.tick_failures = 0
        self.syncing = bool(settings.sync_token)
        if self.syncing:
            SyncLoop(clock, settings.interval, self.tick, self._behind).setServiceParent(self)
        self.heartbeat = None
        if settings.heartbeat is not None:
            hb = settings.heartbeat
            self.heartbeat = HeartbeatPublisher(store, clock, signer=hb.signer,
                                                endpoint=hb.endpoint, zone=hb.zone,
                                                version=hb.version, ttl=hb.ttl,
                                                run_write=run_write)
            self._timer("heartbeat", hb.interval, self.heartbeat.tick)

    def _timer(self, name: str, interval: float, call) -> None:
        timer = TimerService(interval, call)
        timer.clock = self.clock
        timer.setName(name)
        timer.setServiceParent(self)

    def _behind(self) -> bool:
        """Whether a peer's walk stopped at the tick budget rather than at its log's end."""
        return any(not s.caught_up and not s.failing
                   for s in self.anti_entropy.states.values())

    def _client(self, peer: Peer) -> PeerClient:
        return PeerClient(self.transport, peer.url, self.settings.sync_token,
                          slicer=self.slicer)

    # --- lifecycle --------------------------------------------------------------------------

    def startService(self):
        now = self.clock.seconds()
        if self.keeper is not None:
            try:
                self.keeper.resume(now)
                if self.settings.initial_manifest:
                    result = self.keeper.offer(self.settings.initial_manifest, now)
                    log.info("manifest from the configuration: {result}", result=result)
            except Exception:
                log.failure("loading the cluster manifest failed")
        self._follow_peers()
        super().startService()
        if self.syncing:
            # Built in slices from now on, so the first peer that asks finds it ready.
            self.index.catch_up(self.clock)

    def stopService(self):
        stopped = super().stopService()
        close = getattr(self.transport, "close", None)
        if close is not None:
            return defer.gatherResults([defer.maybeDeferred(lambda: stopped),
                                        defer.maybeDeferred(close)])
        return stopped

    def _follow_peers(self) -> None:
        """Peers: the manifest's nodes minus this one; the static list without one."""
        if self.keeper is not None and self.keeper.current is not None:
            peers = [Peer(n.node_id, n.http_endpoint.rstrip("/")) for n in self.keeper.peers()]
            if not self.keeper.lists_self():
                log.warn("the manifest in force (seq {seq}) does not list node {node}",
                         seq=self.keeper.current[1].seq, node=self.settings.node_id)
        else:
            peers = [Peer(url, url) for url in self.settings.static_peers]
        self.anti_entropy.set_peers(self._refuse_clear_text(peers))

    def _refuse_clear_text(self, peers: list) -> list:
        """Peers minus plain ``http://`` ones outside loopback and private ranges (a
        manifest may list them; the sync token must not cross the internet in clear)."""
        if self.settings.allow_plain_http_peers:
            return peers
        kept = []
        for peer in peers:
            if plain_http_outside(peer.url):
                log.warn("peer {peer} at {url} refused: plain http:// outside loopback and "
                         "private ranges (use https://, or allow_plain_http_peers = true)",
                         peer=peer.peer_id, url=peer.url)
            else:
                kept.append(peer)
        return kept

    def current_manifest(self, now: float):
        """What ``/v1/sync/cluster-manifest`` serves: the manifest in force, after a look at
        the store for a newer one an operator may just have written."""
        if self.keeper is None:
            return None
        try:
            self.keeper.check_store(now)
        except Exception:
            log.failure("reading cluster.<base> from the store failed")
        return self.keeper.in_force(now)

    # --- the tick ---------------------------------------------------------------------------

    def tick(self) -> defer.Deferred:
        """Gossip, then anti-entropy; the Deferred never fails."""
        try:
            running = defer.ensureDeferred(self._tick())
        except Exception:
            running = defer.fail()
        return running.addErrback(self._tick_failed)

    def _tick_failed(self, failure) -> None:
        self.tick_failures += 1
        log.failure("cluster sync tick failed; the next tick runs as usual", failure)

    async def _tick(self) -> None:
        """Gossip and anti-entropy run side by side, so a peer that is slow to answer one
        holds up neither; a manifest adopted here shapes the next tick's peers."""
        work = [self.anti_entropy.tick()]
        self.index.catch_up(self.clock)     # follows the log's tail, slice by slice
        if self.keeper is not None:
            now = self.clock.seconds()
            self.keeper.check_store(now)
            self.keeper.publish(now)
            work.append(defer.ensureDeferred(self._gossip()))
        for ok, result in await defer.DeferredList(work, consumeErrors=True):
            if not ok:
                self._tick_failed(result)

    async def _gossip(self) -> None:
        states = list(self.anti_entropy.states.values())
        asks = [defer.ensureDeferred(self.anti_entropy.client(s).manifest()).addTimeout(
            2 * self.settings.peer_timeout, self.clock) for s in states]
        results = await defer.DeferredList(asks, consumeErrors=True)
        for ok, result in results:
            if not ok:
                if not result.check(PeerError, defer.TimeoutError):
                    log.failure("gossip failed", result)
                self.gossip_errors += 1
            elif result is not None:
                self.keeper.offer(result, self.clock.seconds())


class SyncLoop(service.Service):
    """Runs ``tick`` (a Deferred that never fails) every ``interval`` seconds, counted
    from each tick's start, and almost at once (``CATCH_UP_PAUSE``) after a tick that
    left a peer ``behind()``; ticks never overlap. Unlike a fixed-rate timer it never skips
    to the next multiple of the interval when a tick overran, so a node catching up is
    never left idle."""

    def __init__(self, clock, interval: float, tick, behind):
        self.setName("sync")
        self.clock = clock
        self.interval = interval
        self.tick = tick
        self.behind = behind
        self._call = None
        self._running = None

    def startService(self):
        super().startService()
        self._run()

    def _run(self) -> None:
        self._call = None
        started = self.clock.seconds()
        self._running = self.tick()
        self._running.addBoth(self._next, started)

    def _next(self, _, started: float) -> None:
        self._running = None
        if not self.running:
            return
        elapsed = self.clock.seconds() - started
        wait = (min(CATCH_UP_PAUSE, self.interval) if self.behind()
                else max(0.0, self.interval - elapsed))
        self._call = self.clock.callLater(wait, self._run)

    def stopService(self):
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._running is not None:
            waiting = defer.Deferred()
            self._running.addBoth(lambda result: waiting.callback(None))
            return waiting
        return None
