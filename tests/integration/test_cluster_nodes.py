"""Three (and four) real ``dmfdns serve`` processes on loopback: kill -9 and restart,
restart without re-pull, partition and heal through a fault proxy, bootstrap from a seed
domain. Measured times and bytes are printed (``-s``) and recorded in docs/cluster.md."""

import signal
import time

import pytest

from dmfdns.proto import bootstrap, cluster_manifest
from dmfdns.proto.cluster_manifest import ClusterNode
from cluster_procs import (OPERATOR, TOKEN, ZONE_OPERATOR, FaultProxy, NodeProc, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]
CONVERGE = 30.0


def manifest_cluster(root, node_ids, listed=None, seq=1):
    """Nodes that follow one signed manifest (listing ``listed``, default all)."""
    nodes = {n: NodeProc(root, n, cluster=f'base = "mesh.test"\n'
                                         f'operator_key = "{OPERATOR.public_key.hex()}"\n'
                                         'manifest_file = "manifest.wire"')
             for n in node_ids}
    members = [nodes[n] for n in (listed or node_ids)]
    wire = cluster_manifest.sign(seq, int(time.time()) + 86400, OPERATOR.public_key,
                                 "mesh.test", [ClusterNode(m.node_id, m.url,
                                                           f"127.0.0.1:{m.dns_port}")
                                               for m in members], OPERATOR)
    for node in nodes.values():
        (node.dir / "manifest.wire").write_text(wire + "\n")
        node.write_config()
    return nodes, wire


@pytest.fixture
def cleanup():
    started = []
    yield started
    for thing in started:
        if isinstance(thing, FaultProxy):
            thing.close()
        else:
            thing.kill()


def start_all(nodes, cleanup):
    for node in nodes:
        node.start()
        cleanup.append(node)
    for node in nodes:
        node.wait_ready()


def identical(nodes) -> bool:
    sets = [node.record_set() for node in nodes]
    return all(s == sets[0] for s in sets)


def test_kill_9_restart_catches_up_exactly_then_a_clean_restart_pulls_nothing(tmp_path,
                                                                             cleanup):
    nodes, _ = manifest_cluster(tmp_path, ["n1", "n2", "n3"])
    n1, n2, n3 = nodes.values()
    start_all(nodes.values(), cleanup)
    for i in range(100):
        (n1 if i % 2 else n2).post(f"before{i}.mesh.test", f"v{i}")
    wait_until(lambda: identical(nodes.values()), CONVERGE)
    n3.kill(signal.SIGKILL)
    for i in range(500):
        (n1 if i % 2 else n2).post(f"during{i}.mesh.test", f"v{i}")
    n1.delete("before1.mesh.test", "v1")
    n3.start()
    n3.wait_ready()
    took = wait_until(lambda: identical(nodes.values()), CONVERGE)
    entries = n3.digest_entries()
    assert len(entries) == len(set(entries)), "a record is duplicated"
    names = {name for name, _ in entries}
    assert {f"during{i}.mesh.test" for i in range(500)} <= names
    assert "before1.mesh.test" not in names and "before2.mesh.test" in names
    received = n3.metric("dmfdns_sync_bytes_received_total", peer="n1") + \
        n3.metric("dmfdns_sync_bytes_received_total", peer="n2")
    print(f"\nkill -9 catch-up of 500 records: {took:.1f} s, {received / 1024:.0f} KiB read")
    # A clean restart with nothing missing: resume the cursors, confirm by full set.
    n3.kill(signal.SIGTERM)
    n3.start()
    n3.wait_ready()
    wait_until(lambda: n3.metric("dmfdns_sync_peer_converged", peer="n1") == 1
               and n3.metric("dmfdns_sync_peer_converged", peer="n2") == 1, CONVERGE)
    for peer in ("n1", "n2"):
        assert n3.metric("dmfdns_sync_records_pulled_total", peer=peer) == 0
        assert n3.metric("dmfdns_sync_digest_pages_total", peer=peer) <= 5
    received = sum(n3.metric("dmfdns_sync_bytes_received_total", peer=p) for p in ("n1", "n2"))
    print(f"restart with nothing missing: converged, {received / 1024:.1f} KiB read")


def test_a_partition_of_20_seconds_heals_to_identical_sets(tmp_path, cleanup):
    """Static peers, one fault proxy per directed link, so n3 is cut both ways."""
    ids = ["n1", "n2", "n3"]
    nodes = {n: NodeProc(tmp_path, n, cluster="") for n in ids}
    links = {}
    for source in ids:
        for target in ids:
            if source != target:
                links[(source, target)] = proxy = FaultProxy(nodes[target].http_port)
                cleanup.append(proxy)
    for source in ids:
        peers = ", ".join(f'"{links[(source, t)].url}"' for t in ids if t != source)
        nodes[source].cluster = f"peers = [{peers}]"
        nodes[source].write_config()
    n1, n2, n3 = nodes.values()
    start_all(nodes.values(), cleanup)
    for i in range(200):
        (n1 if i % 2 else n2).post(f"a{i}.mesh.test", f"v{i}")
    wait_until(lambda: identical(nodes.values()), CONVERGE)
    cut = [proxy for (s, t), proxy in links.items() if "n3" in (s, t)]
    for proxy in cut:
        proxy.cut()
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < 20:
        (n1 if i % 2 else n2).post(f"cut{i}.mesh.test", f"v{i}")
        n3.post(f"lonely{i}.mesh.test", f"v{i}")
        i += 1
        time.sleep(0.05)
    assert not identical(nodes.values())
    for proxy in cut:
        proxy.heal()
    took = wait_until(lambda: identical(nodes.values()), CONVERGE)
    assert len(n1.record_set()) == 200 + 2 * i
    print(f"\npartition 20 s ({2 * i} writes), healed: identical after {took:.1f} s")


def test_a_fresh_node_bootstraps_from_a_seed_domain_and_backfills(tmp_path, cleanup):
    nodes, _ = manifest_cluster(tmp_path, ["n1", "n2", "n3", "n4"])
    members = [nodes[n] for n in ("n1", "n2", "n3")]
    start_all(members, cleanup)
    n1 = nodes["n1"]
    record = bootstrap.sign(1, int(time.time()) + 86400, ZONE_OPERATOR.public_key,
                            "mesh.test", [bootstrap.BootstrapEntry(10, "mesh.test",
                                                                   OPERATOR.public_key)],
                            ZONE_OPERATOR)
    assert n1.post("_dmp.mesh.test", record) == 201
    for i in range(300):
        members[i % 3].post(f"old{i}.mesh.test", f"v{i}")
    # The digest leaves out writes younger than the store's stable horizon, so right after
    # the posts every node's set may still be empty (and equal): wait for the 300 (and the
    # bootstrap record and the manifest the cluster publishes).
    wait_until(lambda: identical(members) and len(n1.record_set()) > 300, CONVERGE)
    n4 = nodes["n4"]
    n4.cluster = ""               # it knows nothing: no base, key, manifest or token
    n4.write_config()
    n4.start(["cluster", "bootstrap", "--seed", "mesh.test",
              "--pin", ZONE_OPERATOR.public_key.hex(),
              "--resolver", f"127.0.0.1:{n1.dns_port}", "--sync-token", TOKEN,
              "--config", "node.toml"])
    cleanup.append(n4)
    n4.wait_ready()
    took = wait_until(lambda: n4.record_set() == n1.record_set(), CONVERGE)
    assert len(n4.record_set()) > 300
    print(f"\nbootstrap from the seed domain: backfilled in {took:.1f} s")
