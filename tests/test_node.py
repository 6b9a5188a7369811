"""make_service composition, the node lock and the sweep loop, without real sockets."""

import dataclasses
import errno
import socket

import pytest
from twisted.internet import address, defer, error, task
from twisted.internet.testing import MemoryReactorClock

from dmfdns.config import ListenAddress, load_config
from dmfdns.dns.server import DNSDatagramProtocol, DNSStreamFactory
from dmfdns.node import make_service
from dmfdns.node_lock import LOCK_FILE, NodeError, NodeLock, NodeLocked
from dmfdns.node_store import Sweeper, open_store
from dmfdns.store.api import StoreError, StoreFull


class FakePort:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.listening = True

    def getHost(self):
        return address.IPv4Address("UDP", self.host, self.port)

    def stopListening(self):
        self.listening = False


class FakeReactor(MemoryReactorClock):
    """MemoryReactorClock plus listenUDP, and a way to make one bind fail."""

    def __init__(self, busy=()):
        super().__init__()
        self.udp = []
        self.busy = set(busy)
        self.ports = []
        self.free_ports = iter(range(40000, 41000))   # what port 0 binds, in order

    def _port(self, kind, port, interface):
        port = port or next(self.free_ports)
        if (kind, port) in self.busy:
            raise error.CannotListenError(interface, port,
                                          socket.error(errno.EADDRINUSE,
                                                       "Address already in use"))
        fake = FakePort(interface, port)
        self.ports.append(fake)
        return fake

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.udp.append((port, protocol, interface))
        return self._port("udp", port, interface)

    def listenTCP(self, port, factory, backlog=50, interface=""):
        super().listenTCP(port, factory, backlog, interface)
        return self._port("tcp", port, interface)


def config_for(tmp_path, listen=("127.0.0.1:5300", "[::1]:5301"), **dns):
    base = load_config(None, cwd=tmp_path)
    addresses = tuple(ListenAddress(a.rsplit(":", 1)[0].strip("[]"), int(a.rsplit(":", 1)[1]))
                      for a in listen)
    return dataclasses.replace(base, dns=dataclasses.replace(base.dns, listen=addresses,
                                                             **dns),
                               http=dataclasses.replace(base.http, listen=()))


def test_make_service_builds_udp_and_tcp_listeners_per_address(tmp_path):
    reactor = FakeReactor()
    node = make_service(config_for(tmp_path, nsid="ns-a"), reactor)
    assert [z.origin for z in node.zones] == ["mesh.test"]
    assert node.responder.settings.nsid == b"ns-a"
    assert node.responder.settings.edns_payload == 1232
    assert len(node.responder.settings.cookie_secret) == 16
    assert not node.ready
    node.startService()
    assert [(p, i) for p, _, i in reactor.udp] == [(5300, "127.0.0.1"), (5301, "::1")]
    # TCP binds first (it is the side that can move when port 0 is asked for).
    assert [(p.port, p.host) for p in reactor.ports][:2] == [(5300, "127.0.0.1")] * 2
    assert [(p, i) for p, _, _, i in reactor.tcpServers] == [(5300, "127.0.0.1"),
                                                             (5301, "::1")]
    assert all(isinstance(proto, DNSDatagramProtocol) and proto.max_udp == 1232
               for _, proto, _ in reactor.udp)
    factory = reactor.tcpServers[0][1]
    assert isinstance(factory, DNSStreamFactory)
    assert (factory.idle_timeout, factory.max_connections, factory.max_message) == \
        (10.0, 100, 65535)
    assert node.ready
    assert node.dns_addresses("tcp") == [ListenAddress("127.0.0.1", 5300),
                                         ListenAddress("::1", 5301)]
    node.stopService()
    assert not any(p.listening for p in reactor.ports)
    assert not node.ready and not node.lock.held


def test_port_zero_gives_udp_and_tcp_the_same_port(tmp_path):
    reactor = FakeReactor(busy={("udp", 40000)})
    node = make_service(config_for(tmp_path, listen=("127.0.0.1:0",)), reactor)
    node.startService()
    # TCP got 40000, which UDP could not have: TCP moved to 40001 and UDP followed it.
    assert node.dns_addresses("udp") == [ListenAddress("127.0.0.1", 40001)]
    assert node.dns_addresses("tcp") == [ListenAddress("127.0.0.1", 40001)]
    assert [(p.port, p.listening) for p in reactor.ports] == [(40000, False), (40001, True),
                                                              (40001, True)]
    node.stopService()


def test_listener_counters_are_per_transport(tmp_path):
    reactor = FakeReactor()
    node = make_service(config_for(tmp_path, listen=("127.0.0.1:5300",)), reactor)
    node.startService()
    udp = reactor.udp[0][1]
    udp.transport = type("T", (), {"write": lambda self, data, addr: None})()
    udp.datagramReceived(b"\x00" * 5, ("127.0.0.1", 1))   # a runt: dropped
    counters = node.transport_counters()
    assert counters[("udp", "127.0.0.1:5300")].dropped == 1
    assert counters[("tcp", "127.0.0.1:5300")].queries == 0
    assert node.dns_counters.dropped_counts() == {"runt": 1}
    node.stopService()


def test_port_in_use_is_one_clear_error_and_releases_the_rest(tmp_path):
    reactor = FakeReactor(busy={("tcp", 5301)})
    node = make_service(config_for(tmp_path), reactor)
    with pytest.raises(NodeError, match=r"cannot listen on \[::1\]:5301 \(TCP\): Address "
                                        "already in use"):
        node.startService()
    assert not any(p.listening for p in reactor.ports)
    node.close()
    assert not node.lock.held


def test_the_cookie_secret_survives_a_restart(tmp_path):
    config = config_for(tmp_path)
    first = make_service(config, FakeReactor())
    secret = first.responder.settings.cookie_secret
    first.close()
    second = make_service(config, FakeReactor())
    assert second.responder.settings.cookie_secret == secret
    second.close()


def test_two_nodes_cannot_share_a_data_dir_but_two_dirs_coexist(tmp_path):
    config = config_for(tmp_path)
    node = make_service(config, FakeReactor())
    with pytest.raises(NodeLocked, match="in use by a running dmfdns node"):
        make_service(config, FakeReactor())
    other = dataclasses.replace(config, node=dataclasses.replace(
        config.node, data_dir=tmp_path / "other", node_id="node2"))
    second = make_service(other, FakeReactor())
    assert second.store is not node.store
    node.close()
    second.close()
    make_service(config, FakeReactor()).close()   # released on close


def test_node_lock_names_the_holder(tmp_path):
    lock = NodeLock(tmp_path).acquire("serve")
    assert (tmp_path / LOCK_FILE).read_text().split()[1] == "serve"
    with pytest.raises(NodeLocked, match=r"pid \d+"):
        NodeLock(tmp_path).acquire("records")
    lock.release()
    NodeLock(tmp_path).acquire("records").release()


def test_read_only_store_needs_an_existing_store(tmp_path):
    config = config_for(tmp_path)
    with pytest.raises(StoreError, match="no dmfdns store"):
        open_store(config, readonly=True)


def test_sweep_runs_on_the_interval(tmp_path):
    reactor = FakeReactor()
    config = config_for(tmp_path)
    node = make_service(config, reactor)
    node.store.put("a.mesh.test", "v", expiry=reactor.seconds() + 5, now=reactor.seconds())
    node.startService()
    reactor.advance(10)
    assert node.store.get("a.mesh.test", reactor.seconds()) == []
    reactor.advance(60)
    assert node.sweeper.removed == 1
    node.stopService()


class FakeStore:
    def __init__(self, results):
        self.results = list(results)
        self.calls = []

    def sweep(self, now, limit, drain=True):
        self.calls.append((now, limit) if drain else (now, limit, "plain"))
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def test_full_batches_continue_on_the_next_reactor_turn():
    clock = task.Clock()
    store = FakeStore([3, 3, 1])
    sweeper = Sweeper(store, clock, batch=3)
    sweeper.tick()
    assert len(store.calls) == 1          # never more than one batch per turn
    clock.advance(0)
    clock.advance(0)
    assert len(store.calls) == 3 and sweeper.removed == 7
    assert clock.getDelayedCalls() == []


def test_a_failing_sweep_is_counted_and_the_loop_goes_on(capsys):
    clock = task.Clock()
    store = FakeStore([StoreError("disk on fire"), 2])
    sweeper = Sweeper(store, clock, batch=10)
    sweeper.tick()
    sweeper.tick()
    assert sweeper.failures == 1 and sweeper.removed == 2


def test_a_batch_runs_apart_as_a_plain_write_and_drains_here_only_on_a_full_map():
    clock, ran = task.Clock(), []

    def run(fn, *args, **kwargs):         # the commit runner: here, noted and inline
        ran.append(fn)
        return defer.maybeDeferred(fn, *args, **kwargs)
    store = FakeStore([4, StoreFull("map full"), 2])
    sweeper = Sweeper(store, clock, batch=10, run=run)
    sweeper.tick()
    sweeper.tick()
    assert len(ran) == 2 and sweeper.removed == 6
    # Only the batch the full map refused was committed again, draining, on this thread.
    assert store.calls == [(0, 10, "plain"), (0, 10, "plain"), (0, 10)]


def test_stopping_cancels_a_pending_batch():
    clock = task.Clock()
    sweeper = Sweeper(FakeStore([5]), clock, batch=5)
    sweeper.tick()
    sweeper.stop()
    assert clock.getDelayedCalls() == []


# --- the ordered build --------------------------------------------------------------------

class ClosingTransport:
    """A peer transport that records being closed."""

    def __init__(self):
        self.closed = 0

    def request(self, method, url, headers, body):
        raise AssertionError("no peer is called while building")

    def close(self):
        self.closed += 1


BUILD_STEPS = ("make_transfers", "make_responder", "dns_listeners", "Sweeper", "StallProbe",
               "node_metrics", "WriteService", "GroupCommitter", "make_notifier",
               "Credentials", "import_token_file", "make_http", "add_registration",
               "add_update", "http_listeners", "tls_listeners", "make_cluster", "Node")


@pytest.mark.parametrize("step", BUILD_STEPS)
def test_a_failing_build_step_releases_everything_made_before_it(tmp_path, monkeypatch, step):
    import dmfdns.node as node_module

    def fail(*args, **kwargs):
        raise RuntimeError(f"{step} failed")
    monkeypatch.setattr(node_module, step, fail)
    config = config_for(tmp_path)
    transport = ClosingTransport()
    with pytest.raises(RuntimeError, match=f"{step} failed"):
        make_service(config, FakeReactor(), peer_transport=transport)
    # The lock is free and LMDB (which refuses a second handle to one environment in one
    # process) opens again: the store was closed.
    NodeLock(config.node.data_dir).acquire("check").release()
    open_store(config).close()
    assert transport.closed == (1 if step == "Node" else 0)
    monkeypatch.undo()
    make_service(config, FakeReactor()).close()


def test_stopping_closes_the_transport_then_the_store_then_the_lock(tmp_path):
    config = config_for(tmp_path)
    transport = ClosingTransport()
    node = make_service(config, FakeReactor(), peer_transport=transport)
    node.startService()
    assert node.cluster.transport is transport
    node.stopService()
    assert transport.closed >= 1 and not node.lock.held and not node.store_open
    open_store(config).close()
    node.close()                                   # idempotent
    assert transport.closed >= 1 and not node.lock.held


def test_the_operator_key_file_is_read_once(tmp_path, monkeypatch):
    import dmfdns.node_files as files_module
    key_file = tmp_path / "operator.pub"
    key_file.write_text("ab" * 32 + "\n")
    config = config_for(tmp_path)
    config = dataclasses.replace(config, cluster=dataclasses.replace(
        config.cluster, base="mesh.test", operator_key_file=key_file))
    reads = []
    real = files_module.read_operator_key
    monkeypatch.setattr(files_module, "read_operator_key",
                        lambda cluster: reads.append(cluster) or real(cluster))
    node = make_service(config, FakeReactor())
    assert len(reads) == 1
    assert node.cluster.settings.operator_key == bytes.fromhex("ab" * 32)
    assert node.writes.operator_key == bytes.fromhex("ab" * 32)
    node.close()


def test_the_node_migrates_an_older_store_at_start_and_logs_each_step(tmp_path):
    import pathlib
    import shutil
    from twisted.logger import formatEvent, globalLogPublisher
    from dmfdns.store.migrations import CURRENT_VERSION
    config = config_for(tmp_path)
    fixture = pathlib.Path(__file__).resolve().parent / "fixtures" / "store-v1"
    shutil.copytree(fixture, config.node.data_dir)
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        node = make_service(config, FakeReactor())
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert node.store.meta_get("store:schema") == str(CURRENT_VERSION).encode()
    assert [v.value for v in node.store.get("alpha.mesh.test", 1_800_000_002)]
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "dmfdns.store"]
    assert lines == [f"store at {config.node.data_dir} migrated to schema {m}: "
                     f"{migrations_what(m)}" for m in range(2, CURRENT_VERSION + 1)]
    node.close()


def migrations_what(version: int) -> str:
    from dmfdns.store.migrations import MIGRATIONS
    return next(m.what for m in MIGRATIONS if m.version == version)
