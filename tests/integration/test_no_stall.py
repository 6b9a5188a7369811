"""The reactor is never held for long: the full-set index is built in slices while DNS is
answered over real loopback sockets in between, and the stall probe measures lateness."""

import threading
import time

import pytest
import pytest_twisted
from dnslib import DNSRecord
from twisted.internet import reactor, task, threads

from dmfdns.stall_probe import StallProbe
from dmfdns.sync.fullset import FullSetIndex

from node_support import dns_port, node_config, start_node

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
