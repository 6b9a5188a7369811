"""DNS worker processes: ``[dns] workers = N`` (layer 3, built by ``make_service``).

One Python process answers DNS on one core. With N > 1 the node's main process and N - 1
workers each bind every ``[dns] listen`` address with ``SO_REUSEPORT`` (``node_listener``)
and the kernel spreads the queries over them, in the manner of NSD's ``server-count`` with
``reuseport`` (docs/decisions.md §3.5). The main process stays the store's single
writer (HTTP, sync, UPDATE, sweeps); a worker opens the LMDB environment read-only and
builds the same responder (``node_dns.make_responder``).

* **Writes.** A worker learns of writes through LMDB alone: it reads the store generation
  on every query and its answer cache drops what the new generations touched
  (``store/touched.py``), so an answer after a committed write is never stale.
* **Metrics.** Every second a worker writes one JSON line with its counters to its stdout
  pipe; the main process keeps the latest line of each worker and ``/metrics`` shows the
  sum of all processes (``combined_counters``) plus the queries of each process
  (``dmfdns_dns_worker_queries_total{worker}``, the main process being worker 0), all in
  one scrape. Counts of a worker that died are kept, so the sums never go back.
* **Life.** A worker that dies is started again after ``RESTART_DELAY`` (counted in
  ``restarts``). Stopping the node sends SIGTERM to every worker and waits for them
  (SIGKILL after ``STOP_TIMEOUT``). A worker whose stdin pipe closes (the main process is
  gone, however it went) stops by itself.
* **UPDATE and transfers.** Only the main process holds the write path and the transfer
  journal, so a DNS UPDATE or AXFR/IXFR that the kernel hands to a worker is refused; the
  sender retries (RFC 2136 section 7.4) and may reach the main process from another source
  port. Nodes taking UPDATE or serving transfers are best left at N = 1.
"""

import json
import sys
import types

from twisted.application import service
from twisted.internet import defer, protocol, stdio, task
from twisted.logger import Logger

from .config import Config, ConfigError, ListenAddress
from .dns.counters import DnsCounters
from .dns.cache_sizing import RESIZE_INTERVAL
from .node_dns import cache_sizer, dns_listeners, make_responder
from .node_dnssec import KEY_TICK, KeySchedule, signing_counts
from .node_files import load_zones
from .node_store import open_store

RESTART_DELAY = 1.0
STOP_TIMEOUT = 5.0
SNAPSHOT_INTERVAL = 1.0
WORKER_COMMAND = "dns-worker"
MAX_LINE = 1 << 20
log = Logger(namespace="dmfdns.server")


def check_workers(config: Config) -> None:
    """Workers re-read the configuration file: a node built from text cannot have them."""
    if config.dns.workers > 1 and config.source is None:
        raise ConfigError("[dns] workers > 1 needs the node to start from a configuration "
                          "file (each worker reads it)")


class _WorkerProtocol(protocol.ProcessProtocol):
    """The main process's end of one worker: its counter lines in, its exit."""

    def __init__(self, pool: "WorkerPool", index: int):
        self.pool = pool
        self.index = index
        self.buffer = b""
        self.ended = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > MAX_LINE:
            self.buffer = b""
        for line in lines[-1:]:
            try:
                self.pool.snapshots[self.index] = json.loads(line)
            except ValueError:
                log.warn("DNS worker {index} wrote a line that is not JSON", index=self.index)

    def processEnded(self, reason) -> None:
        self.pool.worker_ended(self)
        self.ended.callback(None)


class WorkerPool(service.Service):
    """Starts, watches and stops the N - 1 worker processes of a node."""

    name = "dns-workers"

    def __init__(self, config: Config, reactor, listeners, *, executable: str = sys.executable):
        self.config = config
        self.reactor = reactor
        self.listeners = listeners          # the main process's DNS listeners (bound first)
        self.executable = executable
        self.count = config.dns.workers - 1
        self.processes = {}                 # index -> _WorkerProtocol of a live worker
        self.snapshots = {}                 # index -> the worker's latest counter line
        self.retired = DnsCounters()        # counts of workers that ended
        self.retired_transports = {}        # proto -> {field: n} of workers that ended
        self.retired_signing = {}           # zone -> {"made", "hits"} of workers that ended
        self.restarts = 0
        self._pending = {}                  # index -> delayed restart

    def startService(self):
        super().startService()
        for index in range(1, self.count + 1):
            self._spawn(index)

    def argv(self, index: int) -> list[str]:
        config = self.config
        args = [self.executable, "-m", "dmfdns", WORKER_COMMAND, "--config",
                str(config.source), "--data-dir", str(config.node.data_dir),
                "--index", str(index)]
        for listener in self.listeners:
            if listener.kind == "udp" and listener.bound is not None:
                args += ["--listen", str(listener.bound)]
        return args

    def _spawn(self, index: int) -> None:
        self._pending.pop(index, None)
        if not self.running:
            return
        worker = _WorkerProtocol(self, index)
        # env=None: the worker inherits this process's environment.
        self.reactor.spawnProcess(worker, self.executable, self.argv(index), env=None,
                                  childFDs={0: "w", 1: "r", 2: 2})
        self.processes[index] = worker

    def worker_ended(self, worker: _WorkerProtocol) -> None:
        index = worker.index
        if self.processes.get(index) is worker:
            del self.processes[index]
        last = self.snapshots.pop(index, None)
        if last is not None:
            self.retired.add(last["dns"])
            for proto, fields in last["transports"].items():
                kept = self.retired_transports.setdefault(proto, {})
                for name, n in fields.items():
                    kept[name] = kept.get(name, 0) + n
            for zone, counts in last.get("dnssec", {}).items():
                kept = self.retired_signing.setdefault(zone, {"made": 0, "hits": 0})
                for name in kept:
                    kept[name] += counts[name]
        if self.running:
            self.restarts += 1
            log.warn("DNS worker {index} ended; starting it again in {delay} s",
                     index=index, delay=RESTART_DELAY)
            self._pending[index] = self.reactor.callLater(RESTART_DELAY, self._spawn, index)

    def stopService(self):
        super().stopService()
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        ended = []
        for worker in list(self.processes.values()):
            _signal(worker, "TERM")
            kill = self.reactor.callLater(STOP_TIMEOUT, _signal, worker, "KILL")
            worker.ended.addBoth(lambda result, call=kill: call.active() and call.cancel())
            ended.append(worker.ended)
        return defer.DeferredList(ended)

    def serving(self) -> int:
        """Workers that have bound and reported since they (re)started."""
        return sum(index in self.snapshots for index in self.processes)

    # metrics

    def combined_counters(self, own: DnsCounters) -> DnsCounters:
        """The DNS counters of every process added up (fresh each scrape)."""
        total = DnsCounters()
        total.add(own.snapshot())
        total.add(self.retired.snapshot())
        for snapshot in self.snapshots.values():
            total.add(snapshot["dns"])
        return total

    def transport_counters(self) -> dict:
        """``{proto: [counters, ...]}`` of the workers (latest lines and ended workers)."""
        grouped = {}
        sources = [s["transports"] for s in self.snapshots.values()] + [self.retired_transports]
        for transports in sources:
            for proto, fields in transports.items():
                grouped.setdefault(proto, []).append(types.SimpleNamespace(**fields))
        return grouped

    def signing(self, own: dict) -> dict:
        """``{zone: counts}`` of online signing summed over every process (``own``: the
        main process's signers), with what ``metrics.watch_dnssec`` reads; the cache
        entries are those of the live processes."""
        totals = {zone: {"made": 0, "hits": 0, "entries": 0} for zone in own}
        sources = [signing_counts(own), self.retired_signing]
        sources += [s.get("dnssec", {}) for s in self.snapshots.values()]
        for source in sources:
            for zone, counts in source.items():
                total = totals.setdefault(zone, {"made": 0, "hits": 0, "entries": 0})
                for name, n in counts.items():
                    total[name] += n
        return {zone: types.SimpleNamespace(signatures_made=c["made"], cache_hits=c["hits"],
                                            cached_signatures=c["entries"])
                for zone, c in totals.items()}

    def queries_by_worker(self, own: DnsCounters) -> dict:
        """``{worker: queries answered so far}``, the main process being "0"."""
        counts = {"0": sum(own.queries.values())}
        for index, snapshot in sorted(self.snapshots.items()):
            counts[str(index)] = sum(n for _, _, n in snapshot["dns"]["queries"])
        return counts


def _signal(worker: _WorkerProtocol, name: str) -> None:
    try:
        worker.transport.signalProcess(name)
    except Exception:       # already gone (ProcessExitedAlready)
        pass


# --- the worker process ---------------------------------------------------------------------

class _ParentPipe(protocol.Protocol):
    """The worker's stdin and stdout: counter lines out; end of stdin means the main
    process is gone, so the worker stops."""

    def __init__(self, reactor):
        self.reactor = reactor

    def connectionLost(self, reason=None) -> None:
        if self.reactor.running:
            self.reactor.stop()


def run_worker(config: Config, reactor, addresses: list[ListenAddress]) -> list:
    """Start a worker on ``reactor``: the read-only store, the responder, listeners with
    SO_REUSEPORT on ``addresses``, the counter lines to the parent. Returns the services
    to stop at shutdown (the caller runs the reactor)."""
    zones = load_zones(config)
    store = open_store(config, readonly=True)
    responder = make_responder(config, reactor, zones, store, create_keys=False)
    listeners = dns_listeners(config, reactor, responder, addresses=addresses, reuseport=True)
    for listener in listeners:
        listener.startService()
    pipe = _ParentPipe(reactor)
    stdio.StandardIO(pipe, reactor=reactor)

    def report():
        transports = {}
        for listener in listeners:
            fields = transports.setdefault(listener.kind, {})
            for name, n in listener.counters.as_dict().items():
                fields[name] = fields.get(name, 0) + n
        line = {"dns": responder.counters.snapshot(), "transports": transports,
                "dnssec": signing_counts(responder.signers)}
        pipe.transport.write(json.dumps(line).encode() + b"\n")

    reporter = task.LoopingCall(report)
    reporter.clock = reactor
    reporter.start(SNAPSHOT_INTERVAL, now=True)
    schedule = KeySchedule(config, zones, responder)    # rollover steps, as the main's
    keys = task.LoopingCall(lambda: schedule.tick(reactor.seconds()))
    keys.clock = reactor
    keys.start(KEY_TICK, now=False)
    loops = [reporter, keys]
    sizer = cache_sizer(config, responder, store)       # its own cache, sized as the main's
    if sizer is not None:
        loops.append(task.LoopingCall(sizer.tick))
        loops[-1].clock = reactor
        loops[-1].start(RESIZE_INTERVAL, now=False)

    def stop():
        for loop in loops:
            if loop.running:
                loop.stop()
        stopped = [defer.maybeDeferred(listener.stopService) for listener in listeners]
        return defer.DeferredList(stopped).addBoth(lambda _: store.close())

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    return listeners
