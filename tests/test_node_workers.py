"""The DNS worker pool's bookkeeping with fakes (the processes themselves are exercised by
tests/integration/test_dns_workers.py): counter lines in, counts kept when a worker ends,
restarts scheduled on the given clock, and the configuration check."""

import dataclasses
import json

import pytest
from twisted.internet import task

from dmfdns.config import ConfigError, parse_config
from dmfdns.dns.counters import DnsCounters
from dmfdns.node_workers import RESTART_DELAY, WorkerPool, _WorkerProtocol, check_workers


class FakeReactor(task.Clock):
    def __init__(self):
        super().__init__()
        self.spawned = []

    def spawnProcess(self, proto, executable, args, env=None, childFDs=None):
        self.spawned.append((proto, args))


def config(tmp_path, workers=3):
    parsed = parse_config(f"[dns]\nworkers = {workers}\n", base=tmp_path, cwd=tmp_path)
    return dataclasses.replace(parsed, source=tmp_path / "node.toml")


def line(queries: int) -> bytes:
    counters = DnsCounters()
    for _ in range(queries):
        counters.count_answer("udp", 16, 0, 100)
    return json.dumps({"dns": counters.snapshot(),
                       "transports": {"udp": {"queries": queries}}}).encode() + b"\n"


def test_lines_add_up_and_a_dead_workers_counts_stay(tmp_path):
    reactor = FakeReactor()
    pool = WorkerPool(config(tmp_path), reactor, listeners=[])
    pool.startService()
    assert [args[:4] for _, args in reactor.spawned] == [
        [pool.executable, "-m", "dmfdns", "dns-worker"]] * 2
    first, second = (proto for proto, _ in reactor.spawned)
    first.outReceived(line(2)[:10])                 # a line may arrive in pieces
    first.outReceived(line(2)[10:] + line(5))       # only the latest line counts
    second.outReceived(line(1))
    own = DnsCounters()
    own.count_answer("udp", 16, 0, 100)
    assert sum(pool.combined_counters(own).queries.values()) == 1 + 5 + 1
    assert pool.queries_by_worker(own) == {"0": 1, "1": 5, "2": 1}
    assert pool.serving() == 2
    first.processEnded(None)
    assert pool.serving() == 1 and pool.restarts == 1
    assert sum(pool.combined_counters(own).queries.values()) == 7      # kept
    assert sum(c.queries for c in pool.transport_counters()["udp"]) == 6
    reactor.advance(RESTART_DELAY)
    assert len(reactor.spawned) == 3 and pool.processes[1] is reactor.spawned[2][0]


def one_worker(tmp_path):
    """A started pool of one worker whose signals are recorded: (reactor, pool, worker,
    signals)."""
    reactor = FakeReactor()
    pool = WorkerPool(config(tmp_path, workers=2), reactor, listeners=[])
    pool.startService()
    (worker, _), = reactor.spawned
    signals = []
    worker.transport = type("T", (), {"signalProcess": lambda self, s: signals.append(s)})()
    return reactor, pool, worker, signals


def test_no_restart_once_stopping(tmp_path):
    reactor, pool, worker, signals = one_worker(tmp_path)
    stopped = pool.stopService()
    assert signals == ["TERM"]
    worker.processEnded(None)
    assert stopped.called and pool.restarts == 0
    reactor.advance(60)
    assert len(reactor.spawned) == 1 and signals == ["TERM"]


def test_a_worker_that_does_not_stop_is_killed(tmp_path):
    reactor, pool, _, signals = one_worker(tmp_path)
    pool.stopService()
    reactor.advance(5)
    assert signals == ["TERM", "KILL"]


def test_workers_need_a_configuration_file(tmp_path):
    text = parse_config("[dns]\nworkers = 2\n", base=tmp_path, cwd=tmp_path)
    with pytest.raises(ConfigError, match="configuration file"):
        check_workers(text)
    check_workers(config(tmp_path, workers=2))
    check_workers(parse_config("", base=tmp_path, cwd=tmp_path))


def test_a_garbled_line_is_ignored(tmp_path):
    reactor = FakeReactor()
    pool = WorkerPool(config(tmp_path, workers=2), reactor, listeners=[])
    pool.startService()
    (worker, _), = reactor.spawned
    worker.outReceived(b"not json\n")
    assert pool.snapshots == {} and isinstance(worker, _WorkerProtocol)


def test_signing_counts_add_up_over_the_processes_and_stay_when_a_worker_ends(tmp_path):
    reactor = FakeReactor()
    pool = WorkerPool(config(tmp_path), reactor, listeners=[])
    pool.startService()
    first, second = (proto for proto, _ in reactor.spawned)

    def signing_line(made, hits, entries):
        data = json.loads(line(0))
        data["dnssec"] = {"mesh.test": {"made": made, "hits": hits, "entries": entries}}
        return json.dumps(data).encode() + b"\n"

    first.outReceived(signing_line(10, 4, 9))
    second.outReceived(signing_line(3, 1, 3))
    own = {"mesh.test": type("Signer", (), {"signatures_made": 5, "cache_hits": 2,
                                            "cached_signatures": 5})()}
    total = pool.signing(own)["mesh.test"]
    assert (total.signatures_made, total.cache_hits, total.cached_signatures) == (18, 7, 17)
    first.processEnded(None)
    total = pool.signing(own)["mesh.test"]
    assert (total.signatures_made, total.cache_hits, total.cached_signatures) == (18, 7, 8)
