"""Pieces of ``dmfdns demo`` that can be checked without starting nodes: the cluster it
configures (key, token, signed manifest, ``[cluster]`` section) and the bounded wait for
anti-entropy, on fakes and a ``task.Clock``."""

import subprocess
import sys

import pytest
from twisted.internet import defer, task

from dmfdns.client import prekeys, send
from dmfdns.commands import demo, demo_procs
from dmfdns.config import parse_config, read_manifest_wire, read_operator_key, read_sync_token
from dmfdns.proto import cluster_manifest

from client_fakes import NOW, FakeMesh, make_user, pin_each_other


@pytest.fixture
def cluster(tmp_path):
    nodes = demo.plan_nodes(tmp_path)
    return nodes, demo.new_cluster(tmp_path, nodes, NOW)


def _load(node, cluster, tmp_path):
    text = demo.node_config(node, node.home / "data", cluster)
    return parse_config(text, base=node.home, cwd=tmp_path)


def test_each_node_config_is_valid_and_joins_the_cluster(cluster, tmp_path):
    nodes, shared = cluster
    for node in nodes:
        config = _load(node, shared, tmp_path)
        assert config.node.node_id == node.name and config.node.data_dir == node.home / "data"
        assert [(a.host, a.port) for a in config.dns.listen] == [("127.0.0.1", node.dns_port)]
        assert [(a.host, a.port) for a in config.http.listen] == [("127.0.0.1", node.http_port)]
        assert [z.file.name for z in config.zones] == ["mesh.test.zone"]
        sync = config.cluster
        assert sync.base == "mesh.test" and sync.sync_interval <= 1.0
        assert read_sync_token(sync) == shared.sync_token and len(shared.sync_token) >= 32
        assert read_operator_key(sync) == shared.operator.public_key
        assert read_manifest_wire(sync) == shared.manifest_wire


def test_the_manifest_verifies_with_the_pinned_key_and_lists_every_node(cluster, tmp_path):
    nodes, shared = cluster
    config = _load(nodes[0], shared, tmp_path)
    manifest = cluster_manifest.parse_and_verify(
        read_manifest_wire(config.cluster), read_operator_key(config.cluster), now=NOW,
        expected_cluster_name=config.cluster.base)
    assert manifest is not None and manifest.seq == demo.MANIFEST_SEQ
    assert manifest.exp > NOW
    assert [(m.node_id, m.http_endpoint, m.dns_endpoint) for m in manifest.nodes] == [
        (n.name, f"http://127.0.0.1:{n.http_port}", f"127.0.0.1:{n.dns_port}") for n in nodes]


def test_every_run_has_its_own_operator_key_and_token(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = demo.new_cluster(tmp_path / "a", demo.plan_nodes(tmp_path / "a"), NOW)
    second = demo.new_cluster(tmp_path / "b", demo.plan_nodes(tmp_path / "b"), NOW)
    assert first.operator.public_key != second.operator.public_key
    assert first.sync_token != second.sync_token
    assert cluster_manifest.parse_and_verify(first.manifest_wire, second.operator.public_key,
                                             now=NOW) is None


def test_ports_are_distinct_and_never_the_reserved_ones(tmp_path):
    taken = set(demo.RESERVED_PORTS)
    ports = [demo.free_port(taken) for _ in range(6)]
    assert len(set(ports)) == 6 and not set(ports) & demo.RESERVED_PORTS
    planned = demo.plan_nodes(tmp_path)
    node_ports = [p for n in planned for p in (n.dns_port, n.http_port)]
    assert len(set(node_ports)) == 6 and not set(node_ports) & demo.RESERVED_PORTS


def test_a_node_that_dies_at_start_is_reported_with_its_last_log_line(cluster, tmp_path):
    _, shared = cluster
    (tmp_path / "node.log").write_text("starting\nConfigError: port in use\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    node = demo._Node("demo1", tmp_path, 1, 1, process)
    with pytest.raises(demo.DemoFailed, match="demo1 exited with status 3: ConfigError: "
                                             "port in use"):
        demo_procs.wait_ready([node], shared.sync_token, demo.MANIFEST_SEQ)


# --- waiting for anti-entropy ------------------------------------------------------------

class ArrivingReader:
    """Serves ``values`` at each name from ``arrives_at`` (clock seconds) on."""

    def __init__(self, clock, values: dict, arrives_at: float, failing=()):
        self.clock, self.values, self.arrives_at = clock, values, arrives_at
        self.failing = set(failing)

    def read(self, name):
        if name in self.failing:
            return defer.fail(OSError("timeout"))
        if self.clock.seconds() < self.arrives_at:
            return defer.succeed([])
        return defer.succeed(list(self.values.get(name, [])))


WRITTEN = {"a.mesh.test": ["v1", "v2"], "b.mesh.test": ["v3"]}


def _node(tmp_path, name):
    home = tmp_path / name
    home.mkdir()
    (home / "node.log").write_text(f"{name} started\n{name}: sync tick\n")
    return demo._Node(name, home, 1, 1)


def _run(clock, coroutine, seconds):
    """Advance ``clock`` in 50 ms steps until the coroutine ends (at most ``seconds``)."""
    outcome = []
    defer.ensureDeferred(coroutine).addBoth(outcome.append)
    for _ in range(int(seconds / 0.05)):
        if outcome:
            break
        clock.advance(0.05)
    assert outcome, "the wait did not end"
    return outcome[0]


def test_the_wait_reports_how_long_each_node_took(tmp_path):
    clock = task.Clock()
    source = (_node(tmp_path, "demo1"), ArrivingReader(clock, WRITTEN, 0))
    replicas = [(_node(tmp_path, "demo2"), ArrivingReader(clock, WRITTEN, 1.2)),
                (_node(tmp_path, "demo3"), ArrivingReader(clock, WRITTEN, 0.4))]
    records, took = _run(clock, demo.wait_replicated(clock, source, replicas, list(WRITTEN),
                                                     timeout=5, step=0.1), 3)
    assert records == 3 and list(took) == ["demo2", "demo3"]
    assert 1.2 <= took["demo2"] < 1.35 and 0.4 <= took["demo3"] < 0.55


def test_a_node_holding_only_some_values_is_still_waited_for(tmp_path):
    clock = task.Clock()
    partial = {"a.mesh.test": ["v1"], "b.mesh.test": ["v3"]}
    source = (_node(tmp_path, "demo1"), ArrivingReader(clock, WRITTEN, 0))
    replicas = [(_node(tmp_path, "demo3"), ArrivingReader(clock, partial, 0))]
    failure = _run(clock, demo.wait_replicated(clock, source, replicas, list(WRITTEN),
                                               timeout=2, step=0.1), 3)
    assert failure.check(demo.DemoFailed)
    assert str(failure.value) == (
        "demo3 still lacks 1 of the 3 records written to demo1 after 2 s; is cluster sync "
        "running? (demo3's log: demo3: sync tick)")


def test_without_sync_the_wait_fails_within_its_bound(tmp_path):
    clock = task.Clock()
    source = (_node(tmp_path, "demo1"), ArrivingReader(clock, WRITTEN, 0))
    replicas = [(_node(tmp_path, "demo2"), ArrivingReader(clock, WRITTEN, float("inf"),
                                                          failing={"b.mesh.test"}))]
    failure = _run(clock, demo.wait_replicated(clock, source, replicas, list(WRITTEN),
                                               timeout=1.5, step=0.1), 5)
    assert failure.check(demo.DemoFailed)
    assert "demo2 still lacks 3 of the 3 records" in str(failure.value)
    assert 1.5 <= clock.seconds() <= 1.65


def test_a_source_that_lost_an_acknowledged_name_is_an_error(tmp_path):
    clock = task.Clock()
    source = (_node(tmp_path, "demo1"), ArrivingReader(clock, {"a.mesh.test": ["v1"]}, 0))
    failure = _run(clock, demo.wait_replicated(clock, source, [], list(WRITTEN)), 0.1)
    assert failure.check(demo.DemoFailed)
    assert str(failure.value) == "demo1 does not serve b.mesh.test, which it acknowledged"


def test_message_names_are_exactly_what_a_send_writes():
    mesh = FakeMesh()
    alice, bob = make_user("alice"), make_user("bob")
    contact = pin_each_other(alice, bob)
    pin_each_other(bob, alice)
    d = defer.ensureDeferred(prekeys.refresh(mesh.net, bob[0], bob[1], 3, NOW))
    assert d.called
    before = len(mesh.writes)
    [sent] = _result(send.send_text(mesh.net, alice[0], alice[1], contact, b"hi", NOW))
    written = {name for name, _, _ in mesh.writes[before:]}
    names = demo.message_names(sent, alice[1].keys.ed25519_public, send.recipient_id(contact),
                               alice[0].zone)
    assert set(names) == written and len(names) == sent.total_chunks + 2   # + the claim


def _result(coroutine):
    outcome = []
    defer.ensureDeferred(coroutine).addBoth(outcome.append)
    return outcome[0]
