"""The reactor is never held for long: the full-set index is built in slices while DNS is
answered over real loopback sockets in between, and the stall probe measures lateness."""

import hashlib
import threading
import time
import urllib.request

import pytest
import pytest_twisted
from dnslib import DNSRecord
from twisted.internet import defer, reactor, task, tcp, threads

from dmfdns.http import channel
from dmfdns.proto import identity, owners
from dmfdns.proto.signing import Signer
from dmfdns.stall_probe import StallProbe
from dmfdns.stall_trace import StallTrace
from dmfdns.sync.anti_entropy import CURSOR_META, Peer
from dmfdns.sync.fullset import FullSetIndex
from dmfdns.sync.heartbeat import HeartbeatPublisher

from node_support import dns_port, http_port, node_config, start_node

pytestmark = pytest.mark.integration
RECORDS = 20_000


@pytest.fixture
def node(tmp_path):
    running = start_node(node_config(tmp_path, tmp_path / "data"))
    yield running
    pytest_twisted.blockon(running.stopService())


def fill(store, count: int) -> None:
    """``count`` values written ten seconds ago (past the log's stable horizon)."""
    then = time.time() - 10
    for start in range(0, count, 5_000):
        store.put_many([(f"n{i}.fill.mesh.test", f"value {i}", then + 3600)
                        for i in range(start, min(count, start + 5_000))], now=then)


def query_until(port: int, stop: threading.Event, answered: list) -> None:
    """UDP queries one after another until ``stop``; the monotonic time of each answer."""
    while not stop.is_set():
        reply = DNSRecord.question("n7.fill.mesh.test", "TXT").send(
            "127.0.0.1", port, timeout=5)
        if DNSRecord.parse(reply).rr:
            answered.append(time.monotonic())


@pytest_twisted.inlineCallbacks
def test_dns_is_answered_between_the_slices_of_an_index_build(node):
    fill(node.store, RECORDS)
    index = FullSetIndex(node.store, slice_seconds=0.002)
    slices = []                       # (start, end) of each slice, monotonic
    refresh = index.refresh

    def timed_refresh(now):
        start = time.monotonic()
        try:
            return refresh(now)
        finally:
            slices.append((start, time.monotonic()))
    index.refresh = timed_refresh

    stop, answered = threading.Event(), []
    asking = threads.deferToThread(query_until, dns_port(node), stop, answered)
    yield task.deferLater(reactor, 0.3, lambda: None)       # the thread is answered
    before = len(answered)
    caught_up = yield index.catch_up(reactor)
    stop.set()
    yield asking

    assert caught_up is True and index.count == RECORDS
    assert before > 0 and len(slices) >= 10
    # Answers came back while the index was half built. The reactor answers only between
    # slices, so a build that held it throughout would let at most the one answer already
    # on its way land inside the build. (The asking thread stamps an answer when it gets
    # the GIL back, which may be inside the next slice: the build's span is the window.)
    build_start, build_end = slices[0][0], slices[-1][1]
    during = [t for t in answered if build_start < t < build_end]
    assert len(during) >= 5, (len(during), len(slices))
    assert max(end - start for start, end in slices) < 0.25


def test_the_stall_probe_keeps_the_largest_lateness():
    clock = task.Clock()
    probe = StallProbe(clock, interval=0.010)
    probe.start()
    clock.advance(0.010)
    clock.advance(0.010)
    assert probe.max_lateness == 0.0 and probe.samples == 2
    clock.advance(0.130)                 # the reactor was held: 120 ms late
    assert probe.max_lateness == pytest.approx(0.120)
    assert probe.take_recent_max() == pytest.approx(0.120)
    clock.advance(0.010)
    assert probe.take_recent_max() == 0.0
    histogram = dict(probe.histogram())
    assert histogram[0.005] == 3 and histogram[0.1] == 3 and histogram[0.25] == 4
    probe.stop()
    assert not clock.getDelayedCalls()


@pytest_twisted.inlineCallbacks
def test_a_running_node_exports_its_stall_probe(node):
    yield task.deferLater(reactor, 0.1, lambda: None)
    assert node.stall_probe.samples >= 3
    text = node.metrics.registry.get_sample_value("dmfdns_reactor_stall_max_seconds")
    assert text is not None and text >= 0


# --- a pulled batch is admitted in slices and committed off the reactor thread ---------------

SIGNER = Signer(hashlib.sha256(b"no-stall identities").digest())
X25519 = hashlib.sha256(b"no-stall x25519").digest()
IDENTITIES = 1_024          # four pull batches of 256, each identity an Ed25519 verification


def identities(count: int) -> list[tuple[str, str]]:
    """``count`` valid identity records (a different username each, one signing key)."""
    return [(owners.identity_hashed(f"stall{i}", "mesh.test"),
             identity.sign(f"stall{i}", X25519, SIGNER.public_key, 1_700_000_000 + i, SIGNER))
            for i in range(count)]


@pytest.fixture
def pair(tmp_path):
    """A source node holding IDENTITIES valid identities and an empty node that syncs
    from it only when the test ticks it (no peers configured)."""
    cluster = {"sync_token": "no-stall-token", "sync_interval": "1h"}
    source = start_node(node_config(tmp_path, tmp_path / "a", node_id="a", cluster=cluster))
    then = time.time() - 10
    source.store.put_many([(name, value, then + 86_400) for name, value in
                           identities(IDENTITIES)], now=then)
    sink = start_node(node_config(tmp_path, tmp_path / "b", node_id="b", cluster=cluster))
    sink.store.put("n7.fill.mesh.test", "asked", expiry=then + 3600, now=then)
    yield source, sink
    pytest_twisted.blockon(sink.stopService())
    pytest_twisted.blockon(source.stopService())


def on_thread(calls: list, fn):
    """``fn``, noting the thread it runs on in ``calls``."""
    def wrapper(*args, **kwargs):
        calls.append(threading.get_ident())
        return fn(*args, **kwargs)
    return wrapper


@pytest_twisted.inlineCallbacks
def test_dns_is_answered_while_a_pulled_batch_is_admitted_and_commits_run_in_a_thread(
        pair, monkeypatch):
    source, sink = pair
    # Slices of 2 ms (10 ms in a node), as the index test does: more turns within the
    # ~100 ms a batch's admission takes, so the asking thread's answers land among them.
    monkeypatch.setattr(sink.cluster.slicer, "seconds", 0.002)
    sync = sink.cluster.anti_entropy
    reactor_thread = threading.get_ident()
    admitted, applies = {}, []      # pulled batch -> its admission times; committing threads
    checked = sync._checked

    def timed_check(state, record, batch, *rest):
        admitted.setdefault(id(batch), []).append(time.monotonic())
        return checked(state, record, batch, *rest)
    sync._checked = timed_check
    sink.store.apply_remote_many = on_thread(applies, sink.store.apply_remote_many)

    stop, answered = threading.Event(), []
    asking = threads.deferToThread(query_until, dns_port(sink), stop, answered)
    yield task.deferLater(reactor, 0.3, lambda: None)       # the thread is answered
    url = f"http://127.0.0.1:{http_port(source)}"
    sync.set_peers([Peer(url, url)])
    yield sync.tick()
    stop.set()
    yield asking

    assert sink.store.stats().values == IDENTITIES + 1
    assert sum(map(len, admitted.values())) == IDENTITIES and len(admitted) >= 4
    # Admitting a batch of 256 identities takes longer than a slice; DNS was answered
    # while batches were admitted (a batch admitted in one piece would let at most the
    # one answer already on its way land inside its span).
    spans = [(times[0], times[-1]) for times in admitted.values()]
    during = [t for t in answered if any(start < t < end for start, end in spans)]
    assert len(during) >= 5, (len(during), [round(end - start, 3) for start, end in spans])
    # Each page's changes and the cursor past it committed together, off the reactor thread.
    assert len(applies) == 2 and reactor_thread not in applies
    assert sink.store.meta_get(CURSOR_META + url) is not None


@pytest_twisted.inlineCallbacks
def test_the_heartbeat_commits_where_the_nodes_commits_run(node):
    runs = []

    def run_write(fn, *args):
        return threads.deferToThread(on_thread(runs, fn), *args)
    beat = HeartbeatPublisher(node.store, reactor, signer=Signer(bytes(32)),
                              endpoint="https://n1.example.net", zone="mesh.test",
                              version="dmfdns-test", ttl=3600, run_write=run_write)
    yield beat.tick()
    assert beat.published == 1 and beat.failures == 0
    assert runs and threading.get_ident() not in runs
    assert len(node.store.get(owners.heartbeat("mesh.test"), time.time())) == 1


@pytest_twisted.inlineCallbacks
def test_the_sweeper_commits_off_the_reactor_thread(node):
    while node.sweeper._sweeping is not None:      # the sweep of the node's start
        yield task.deferLater(reactor, 0.01, lambda: None)
    then = time.time() - 10
    node.store.put_many([(f"gone{i}.mesh.test", f"value {i}", then + 5) for i in range(50)],
                        now=then)
    sweeps = []
    node.store.sweep = on_thread(sweeps, node.store.sweep)
    node.sweeper.tick()
    assert node.sweeper._sweeping is not None      # committing in a thread meanwhile
    while node.sweeper._sweeping is not None:
        yield task.deferLater(reactor, 0.01, lambda: None)
    assert node.sweeper.removed == 50 and node.store.stats().values == 0
    assert sweeps and threading.get_ident() not in sweeps


def hold_the_reactor(seconds: float) -> None:
    time.sleep(seconds)          # a blocking call: the GIL is free, the reactor is not


@defer.inlineCallbacks
def traced(hold, seconds: float):
    """The stall trace's one report of ``hold(seconds)`` run on the reactor thread."""
    probe = StallProbe(reactor)
    trace = StallTrace(probe, reactor.seconds, threshold=0.030)
    probe.start()
    trace.start()
    try:
        yield task.deferLater(reactor, 0.05, lambda: None)
        yield task.deferLater(reactor, 0, hold, seconds)
        yield task.deferLater(reactor, 0.05, lambda: None)
    finally:
        trace.stop()
        probe.stop()
    (report,) = trace.reports
    return report


@pytest_twisted.inlineCallbacks
def test_the_stall_trace_names_what_held_the_reactor():
    report = yield traced(hold_the_reactor, 0.2)
    assert 0.15 <= report["seconds"] < 0.5 and report["samples"] >= 5
    assert "hold_the_reactor" in report["stack"] and report["watcher_late"] < 0.1
    assert 0 <= report["gc_seconds"] < 0.15        # a sleep, not a garbage collection
    # Asleep, the reactor thread used next to no CPU while the watcher saw it held.
    assert report["watched_seconds"] >= 0.1 and report["cpu_seconds"] < 0.05


def spin_the_reactor(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:     # Python code: the GIL is shared, the CPU used
        pass


@pytest_twisted.inlineCallbacks
def test_the_stall_trace_tells_the_reactor_threads_own_cpu_time():
    report = yield traced(spin_the_reactor, 0.3)
    assert "spin_the_reactor" in report["stack"]
    # Busy, it ran for most of what the watcher saw (the watcher's own turns take a little).
    assert report["watched_seconds"] >= 0.2
    assert report["cpu_seconds"] >= 0.5 * report["watched_seconds"]


def digest_of(port: int, token: str) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/sync/digest?limit=2000",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.read()


@pytest_twisted.inlineCallbacks
def test_http_answers_go_out_in_16_kib_pieces(pair, monkeypatch):
    source, _ = pair
    now = time.time()
    source.store.put_many([(f"big{i}.mesh.test", "v" * 200 + str(i), now + 3600)
                           for i in range(2000)], now=now)
    sends = []                      # (the connection's limit, bytes offered) per send
    original = tcp.Connection.writeSomeData

    def recording(self, data):
        sends.append((self.SEND_LIMIT, len(data)))
        return original(self, data)
    monkeypatch.setattr(tcp.Connection, "writeSomeData", recording)
    body = yield threads.deferToThread(digest_of, http_port(source), "no-stall-token")
    assert len(body) > 8 * channel.SEND_PIECE
    # The answer left in many sends of at most SEND_PIECE bytes each, not 128 KiB ones.
    assert len(sends) > 8 and {limit for limit, _ in sends} == {channel.SEND_PIECE}
