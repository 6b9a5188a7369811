"""Composition: ``make_service(config, reactor)`` is the one place that knows every part
(docs/architecture.md, layer 3).

The build is one ordered sequence; each step takes what the earlier ones made:

1. ``read_node_files`` — zone, token and key files, read once, before anything is locked;
2. the data directory's ``NodeLock`` (``node_lock``), then the LMDB store (``node_store``);
3. the responder and its DNS listeners (``node_dns``);
4. the metrics registry, the one write service (``store.writes``) and its group commit,
   the credentials, the HTTP site and its listeners (``node_http``), DNS UPDATE on the
   responder (``node_dns``), the HTTPS and DNS-over-TLS listeners (``node_tls``);
5. the cluster sync, its endpoints mounted on that site (``node_cluster``);
6. the ``Node`` service holding them all.

Every resource a step opens (the lock, the store, the peer transport) is pushed on one
``ExitStack``: if a later step fails the stack closes them in reverse order before the
error propagates, and once the node exists it owns the stack and closes it when it stops.
Nothing is bound until the node starts. The reactor and the peer transport are passed in,
so several nodes run in one process on one reactor (tests/sync_harness.py).
"""

import contextlib
import functools

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer, threads

from .config import Config, ListenAddress
from .node_cluster import make_cluster
from .dns.cache_sizing import RESIZE_INTERVAL
from .node_dns import add_update, cache_sizer, dns_listeners, make_responder
from .node_dnssec import KEY_TICK, KeySchedule
from .node_files import NodeFiles, read_node_files
from .node_http import add_registration, http_listeners, make_http, node_metrics
from .node_listener import Listener
from .node_lock import NodeError, NodeLock
from .node_resign import Resigner, resign_interval
from .node_status import status_endpoint
from .node_store import Sweeper, open_store
from .node_tls import reload_certificates, tls_listeners
from .dns.notifier import NotifyCounters
from .dns.xfr import TransferCounters
from .node_xfr import journal_limit, make_notifier, make_transfers
from .node_workers import WorkerPool, check_workers
from .dns.write_signer import WriteSigner
from .group_commit import CommitLimits, GroupCommitter
from .stall_probe import StallProbe
from .stall_trace import StallTrace
from .store.credentials import CredentialError, Credentials, import_token_file
from .store.writes import WriteService


class Node(service.MultiService):
    """A running dmfdns node and every part of it, as ``make_service`` built them:
    ``config``, ``files`` (what was read from disk), ``reactor``, ``lock``, ``store``,
    ``zones``, ``responder``, ``dns_counters`` (the responder's), ``writes`` (the one
    ``WriteService`` every write path goes through), ``committer`` (its group commit),
    ``credentials`` (tokens and TSIG keys), ``listeners`` (DNS, HTTP, then TLS),
    ``sweeper``, ``stall_probe`` (and ``stall_trace`` with ``[node] stall_log``),
    ``metrics``, ``http`` (the site, a ``NodeHttp``),
    ``cluster`` (the ``ClusterSync``), ``transfers`` (the zone transfers,
    ``dns.xfr.Transfers``, or None) and ``notifier`` (NOTIFY, or None).

    Children start in the order listeners, cluster, sweep loop, and stop in reverse; then
    the group commit flushes and the owned resources close in reverse order of opening
    (peer transport, store, lock)."""

    def __init__(self, config: Config, reactor, *, files: NodeFiles, lock: NodeLock, store,
                 responder, writes: WriteService, committer: GroupCommitter,
                 credentials: Credentials, listeners: list, sweeper: Sweeper,
                 stall_probe: StallProbe, metrics, http, cluster,
                 owned: contextlib.ExitStack, notifier=None, workers=None,
                 resigner=None):
        super().__init__()
        self.config = config
        self.files = files
        self.reactor = reactor
        self.lock = lock
        self.store = store
        self.zones = list(files.zones)
        self.responder = responder
        self.dns_counters = responder.counters
        self.writes = writes
        self.committer = committer
        self.credentials = credentials
        self.sweeper = sweeper
        self.stall_probe = stall_probe
        threshold = config.node.stall_log
        self.stall_trace = (StallTrace(stall_probe, reactor.seconds, threshold)
                            if threshold > 0 else None)
        self.metrics = metrics
        self.http = http
        self.cluster = cluster
        self.transfers = responder.transfers
        self.notifier = notifier
        self.store_open = True
        self.started_at = None          # reactor time of startService, for the status
        self._owned = owned
        self.listeners: list[Listener] = list(listeners)
        for listener in self.listeners:
            listener.setServiceParent(self)
        self.workers = workers              # DNS worker processes, after the listeners
        if workers is not None:
            workers.setServiceParent(self)
        cluster.setServiceParent(self)
        if notifier is not None:
            notifier.setServiceParent(self)
        self.resigner = resigner            # stored RRSIGs kept fresh (node_resign)
        if resigner is not None:
            resigner.setServiceParent(self)
        sizer = cache_sizer(config, responder, store)
        if sizer is not None:       # the answer cache follows the zone's size
            resize = TimerService(RESIZE_INTERVAL, sizer.tick)
            resize.clock = reactor
            resize.setName("answer-cache-size")
            resize.setServiceParent(self)
        sweep = TimerService(config.store.sweep_interval, sweeper.tick)
        sweep.clock = reactor
        sweep.setName("sweep")
        sweep.setServiceParent(self)
        # DNSSEC key rollover steps, planned by time or made by a command beside the node.
        self.key_schedule = KeySchedule(config, files.zones, responder)
        keys = TimerService(KEY_TICK, lambda: self.key_schedule.tick(reactor.seconds()))
        keys.clock = reactor
        keys.setName("dnssec-keys")
        keys.setServiceParent(self)
        http.readiness.require("store", lambda: self.readiness()["store"])
        http.readiness.require("listeners", lambda: self.readiness()["listeners"])
        if workers is not None:
            http.readiness.require("dns_workers", lambda: workers.serving() == workers.count)

    def dns_addresses(self, kind: str) -> list[ListenAddress]:
        """Bound addresses of the ``"udp"`` or ``"tcp"`` listeners, real ports included."""
        return [l.bound for l in self.listeners if l.kind == kind and l.bound is not None]

    def transport_counters(self) -> dict:
        """``{(kind, "host:port"): TransportCounters}`` of every listener."""
        return {(l.kind, str(l.address)): l.counters for l in self.listeners}

    def reload_certificates(self) -> list[str]:
        """Re-read the TLS certificate files (SIGHUP): open connections keep theirs, new
        ones get the new certificate; one line per listener kind."""
        return reload_certificates(self.files.tls)

    def readiness(self) -> dict:
        """What /readyz reports: the store is open and every listener is bound."""
        bound = all(l.bound is not None for l in self.listeners)
        return {"store": self.store_open, "listeners": bound and self.running == 1}

    @property
    def ready(self) -> bool:
        return all(self.readiness().values())

    def startService(self):
        self.started_at = self.reactor.seconds()
        self.stall_probe.start()
        if self.stall_trace is not None:
            self.stall_trace.start()
        try:
            super().startService()
        except BaseException:
            # A listener failed to bind: release the ones already bound before reporting.
            for listener in self.listeners:
                if listener.port is not None:
                    listener.stopService()
            self.running = 0
            self._stop_probes()
            raise

    @defer.inlineCallbacks
    def stopService(self):
        sweeping = self.sweeper.stop()
        self._stop_probes()
        yield super().stopService()
        yield sweeping
        yield self.committer.stop()   # what was admitted is committed before the store closes
        self.close()

    def _stop_probes(self) -> None:
        self.stall_probe.stop()
        if self.stall_trace is not None:
            self.stall_trace.stop()

    def close(self) -> None:
        """Close what the build opened, in reverse order: the peer transport, the store,
        the data directory's lock (idempotent)."""
        self.store_open = False
        self._owned.close()


def make_service(config: Config, reactor, *, files: NodeFiles | None = None,
                 peer_transport=None) -> Node:
    """Build a node from ``config`` on ``reactor`` (see the module docstring for the
    order). ``files`` is ``read_node_files(config)`` when the caller has read them already;
    ``peer_transport`` replaces real HTTP for the calls to cluster peers. Raises
    NodeLocked, StoreError, ZoneError or ConfigError, having released whatever it made."""
    check_workers(config)
    files = read_node_files(config) if files is None else files
    owned = contextlib.ExitStack()
    try:
        return _build(config, reactor, files, peer_transport, owned)
    except BaseException:
        owned.close()
        raise


def _build(config: Config, reactor, files: NodeFiles, peer_transport,
           owned: contextlib.ExitStack) -> Node:
    lock = NodeLock(config.node.data_dir).acquire("serve")
    owned.callback(lock.release)
    store = open_store(config, journal_limit=journal_limit(config, files.transfers))
    owned.callback(store.close)
    transfers = make_transfers(config, files.zones, files.transfers, store)
    responder = make_responder(config, reactor, files.zones, store, transfers)
    store.sign_blob = WriteSigner(files.zones, lambda: responder.signers,
                                  responder.settings.answer_ttl)
    listeners = dns_listeners(config, reactor, responder)
    run_write = commit_runner(reactor)
    sweeper = Sweeper(store, reactor, config.store.sweep_batch, run=run_write)
    stall_probe = StallProbe(reactor)
    workers = WorkerPool(config, reactor, listeners) if config.dns.workers > 1 else None
    metrics = node_metrics(store, responder.counters, listeners, sweeper, stall_probe,
                           workers)
    metrics.watch_dnssec(lambda: responder.signers if workers is None
                         else workers.signing(responder.signers))
    writes = WriteService(store, zones=files.origins, operator_key=files.operator_key,
                          cluster_base=config.cluster.base or None,
                          observe=metrics.observe_write)
    committer = GroupCommitter(writes.commit, reactor, CommitLimits(
        max_records=config.store.commit_max_records, max_delay=config.store.commit_delay),
        run=run_write)
    metrics.watch_commits(committer)
    resigner = Resigner(store, store.sign_blob, reactor, commit_runner(reactor),
                        interval=resign_interval(responder.signers))
    metrics.watch_stored_signatures(store.sign_blob, resigner)
    notifier = make_notifier(reactor, store, files.zones, files.transfers)
    metrics.watch_transfers(transfers.counters if transfers else TransferCounters(),
                            notifier.counters if notifier else NotifyCounters())
    credentials = Credentials(store)
    try:
        import_token_file(credentials, config.node.data_dir, now=reactor.seconds())
    except CredentialError as exc:
        raise NodeError(str(exc)) from None
    http = make_http(config, reactor, store, files, metrics, writes, committer,
                     credentials)
    add_registration(config, reactor, http, credentials, files.origins)
    add_update(config, reactor, responder, files.zones, writes, credentials, metrics)
    listeners += http_listeners(config, reactor, http)
    listeners += tls_listeners(config, reactor, responder, http.site, files.tls)
    cluster = make_cluster(config, reactor, store, files, metrics=metrics, http=http,
                           writes=writes, run_write=committer.call,
                           transport=peer_transport)
    owned.callback(_close_transport, cluster.transport)
    node = Node(config, reactor, files=files, lock=lock, store=store, responder=responder,
                workers=workers,
                writes=writes, committer=committer, credentials=credentials,
                listeners=listeners, sweeper=sweeper, stall_probe=stall_probe,
                metrics=metrics, http=http, cluster=cluster, owned=owned,
                notifier=notifier, resigner=resigner)
    http.add("v1/status", status_endpoint(node, http.boundary))
    return node


def commit_runner(reactor):
    """Commits (group commits, pulled batches, sweeps, sync cursors) run in the reactor's
    thread pool, off the reactor thread (a durable commit waits for the disk); None on a
    reactor without one (a test's memory reactor), where they run inline."""
    pool = getattr(reactor, "getThreadPool", None)
    if pool is None:
        return None
    return functools.partial(threads.deferToThreadPool, reactor, pool())


def _close_transport(transport) -> None:
    close = getattr(transport, "close", None)   # an injected transport may hold nothing
    if close is not None:
        close()
