"""Three real nodes (``make_service``) syncing in one process on one memory reactor:
convergence, deletes, restarts, partitions, hostile peers and manifest gossip, through the
real HTTP sites and LMDB stores."""

import hashlib
import json
from urllib.parse import urlsplit

from twisted.internet import defer

from dmfdns.proto import identity, owners
from dmfdns.proto.signing import Signer
from dmfdns.store.api import Cursor
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.sync.anti_entropy import Budget, CURSOR_META
from sync_harness import (BASE, NOW, TOKEN, ClusterReactor, SiteTransport, SyncNode,
                          json_response, make_cluster, run, settle, sign_manifest, url_of)


def start(nodes):
    for node in nodes.values():
        node.start()


def identical(nodes) -> bool:
    sets = [node.records() for node in nodes]
    return all(s == sets[0] for s in sets)


def test_a_thousand_records_written_on_two_nodes_reach_all_three(tmp_path):
    clock, _, nodes = make_cluster(tmp_path)
    start(nodes)
    n1, n2, n3 = nodes.values()
    for i in range(500):
        n1.put(f"a{i}.mesh.test", f"from-n1-{i}")
        n2.put(f"b{i}.mesh.test", f"from-n2-{i}")
    run(clock, nodes.values(), ticks=2)
    assert identical(nodes.values())
    assert len(n3.records()) == 1001          # the 1000 and the manifest at cluster.<base>
    assert n3.state("n1").pulled + n3.state("n2").pulled >= 1000
    assert n3.metric("dmfdns_sync_records_pulled_total", peer="n1") >= 500
    assert n3.metric("dmfdns_writes_accepted_total", path="sync") >= 1000


def test_a_delete_replicates_and_a_republish_brings_the_value_back(tmp_path):
    clock, _, nodes = make_cluster(tmp_path)
    start(nodes)
    n1, n2, n3 = nodes.values()
    n1.put("gone.mesh.test", "v1")
    n1.put("gone.mesh.test", "v2")
    run(clock, nodes.values(), ticks=2)
    assert ("gone.mesh.test", "v1") in n3.records()
    n2.store.delete("gone.mesh.test", "v1", now=clock.seconds())
    run(clock, nodes.values(), ticks=2)
    for node in nodes.values():
        assert [v.value for v in node.store.get("gone.mesh.test", clock.seconds())] == ["v2"]
    clock.advance(1)
    n3.put("gone.mesh.test", "v1")
    run(clock, nodes.values(), ticks=2)
    for node in nodes.values():
        assert {v.value for v in node.store.get("gone.mesh.test", clock.seconds())} == \
            {"v1", "v2"}


def test_the_cursor_is_a_position_in_the_peers_log_persisted_in_meta(tmp_path):
    clock, _, nodes = make_cluster(tmp_path)
    start(nodes)
    n1, n2, _ = nodes.values()
    n1.put("x.mesh.test", "v")
    run(clock, nodes.values(), ticks=2)
    saved = n2.store.meta_get(CURSOR_META + "n1").decode()
    ts, name, value_hash = saved.split(":")
    position = n1.store.changes_for(name, clock.seconds())[0]
    assert int(ts) == position.ts_ms and value_hash == position.value_hash
    assert n2.state("n1").cursor == Cursor(int(ts), name, value_hash)


def test_a_restarted_node_resumes_and_confirms_convergence_without_repulling(tmp_path):
    clock, transport, nodes = make_cluster(tmp_path)
    start(nodes)
    n1, n2, n3 = nodes.values()
    for i in range(300):
        n1.put(f"a{i}.mesh.test", f"v{i}")
    run(clock, nodes.values(), ticks=3)
    assert identical(nodes.values())
    clock.advance(5)                       # quiet: every change is past the horizon
    n3.stop()
    before = len(transport.requests)
    # The same data directory, a new node (a process restart keeps LMDB, loses memory).
    restarted = SyncNode(tmp_path, "n3", clock, transport, manifest=sign_manifest(
        ["n1", "n2", "n3"]))
    restarted.start()
    run(clock, [restarted], ticks=1)
    for peer in ("n1", "n2"):
        state = restarted.state(peer)
        assert state.pulled == 0 and state.pages <= 2, state   # start tick + one
        assert state.converged is True and state.fullset_checks == {"match": 1}
    calls = [url for source, _, url in transport.requests[before:] if source == "n3"]
    assert not any("/v1/sync/pull" in url for url in calls)
    assert restarted.metric("dmfdns_sync_peer_converged", peer="n1") == 1


def test_a_lost_record_is_found_by_the_full_set_comparison(tmp_path):
    """A record the cursor walk passed but the store lost (restored backup, bit rot)."""
    clock, _, nodes = make_cluster(tmp_path, fullset_interval=5.0)
    start(nodes)
    n1, n2, _ = nodes.values()
    for i in range(50):
        n1.put(f"a{i}.mesh.test", f"v{i}")
    run(clock, nodes.values(), ticks=2)
    # Simulate loss on n2 behind the sync's back: a raw store write of a tombstone would
    # replicate, so instead restart n2 on a fresh store holding all but one record, cursors
    # kept.
    lost = ("a7.mesh.test", "v7")
    changes = n2.store.changes_after(Cursor(), 1000, now=clock.seconds()).changes
    cursors = {peer: n2.store.meta_get(CURSOR_META + peer) for peer in ("n1", "n3")}
    n2.stop()
    restored = tmp_path / "n2-restored"
    restored.mkdir()
    fresh = LmdbStore(restored, map_size=64 * 2**20, node_id="n2")
    for change in changes:
        if (change.name, change.value) != lost:
            fresh.apply_remote(change, clock.seconds())
    for peer, cursor in cursors.items():
        fresh.meta_set(CURSOR_META + peer, cursor)
    fresh.close()
    n2b = SyncNode(tmp_path, "n2", clock, _transport_of(nodes), data_dir=restored,
                   manifest=sign_manifest(["n1", "n2", "n3"]), fullset_interval=5.0)
    clock.advance(2)
    n2b.start()
    run(clock, [n2b], seconds=3, ticks=2)
    assert lost in n2b.records()
    assert n2b.state("n1").fullset_checks.get("mismatch", 0) >= 1


def _transport_of(nodes):
    return next(iter(nodes.values())).cluster.transport.transport


def test_partitioned_node_catches_up_after_the_link_heals(tmp_path):
    clock, transport, nodes = make_cluster(tmp_path)
    start(nodes)
    n1, n2, n3 = nodes.values()
    transport.cut |= {("n3", "n1.peers.invalid:80"), ("n3", "n2.peers.invalid:80")}
    for i in range(200):
        n1.put(f"a{i}.mesh.test", f"v{i}")
        n2.put(f"b{i}.mesh.test", f"v{i}")
    run(clock, nodes.values(), ticks=5)
    assert len(n3.records()) < 400
    assert n3.state("n1").errors.get("unreachable", 0) >= 5
    assert n3.metric("dmfdns_sync_errors_total", peer="n1", reason="unreachable") >= 5
    transport.cut.clear()
    run(clock, nodes.values(), ticks=2)
    assert identical(nodes.values()) and len(n3.records()) == 401


def test_the_budget_limits_one_tick_and_the_walk_resumes_next_tick(tmp_path):
    clock, _, nodes = make_cluster(tmp_path, budget=Budget(page_limit=100, max_pages=3))
    start(nodes)
    n1, n2, _ = nodes.values()
    for i in range(1000):
        n1.put(f"a{i}.mesh.test", f"v{i}")
    run(clock, [n2], ticks=1)
    assert 300 <= len(n2.records()) <= 302
    assert n2.state("n1").lag_seconds > 0 and not n2.state("n1").caught_up
    run(clock, [n2], ticks=3)
    assert len(n2.records()) == 1001 and n2.state("n1").caught_up


# --- a hostile peer ---------------------------------------------------------------------------

class Hostile:
    """A peer that lies in every way the reliability plan lists."""

    def __init__(self, clock):
        self.clock = clock
        self.mode = "lies"
        self.values = {}

    def entry(self, name, value, ts):
        h = hashlib.sha256(value.encode()).hexdigest()
        self.values[(name, h)] = value
        return {"name": name, "hash": h, "ts": ts, "ttl": 600}

    def __call__(self, method, path, headers, body):
        now_ms = int(self.clock.seconds() * 1000)
        if self.mode == "malformed":
            return json_response(200, b"{not json")
        if path.startswith("/v1/sync/cluster-manifest"):
            return json_response(204, b"")
        if path.startswith("/v1/sync/digest"):
            signer = Signer(b"\x05" * 32)
            good = identity.sign("mallory", b"\x01" * 32, signer.public_key,
                                 int(self.clock.seconds()), signer)
            forged = good[:-8] + ("AAAAAAAA" if not good.endswith("AAAAAAAA") else "BBBBBBBB")
            records = [
                self.entry(owners.identity_hashed("mallory", "mesh.test"), forged, 1000),
                self.entry("big.mesh.test", "x" * 5000, 1001),
                self.entry("fine.mesh.test", "honest-looking", 1002),
                self.entry("future.mesh.test", "f", now_ms + 10 * 365 * 86400 * 1000),
            ]
            return json_response(200, {"records": records, "has_more": True,
                                       "next_cursor": f"{now_ms + 10**12}:zzz:"})
        if path.startswith("/v1/sync/pull"):
            names = json.loads(body)["names"]
            records = [{"name": n, "value": v, "ttl": 600}
                       for (n, _), v in self.values.items() if n in names]
            records.append({"name": "unrequested.mesh.test", "value": "sneaky", "ttl": 600})
            return json_response(200, {"records": records})
        return json_response(404, {"error": "not found"})


def test_a_hostile_peer_stores_nothing_invalid_and_honest_sync_goes_on(tmp_path):
    clock = ClusterReactor()
    transport = SiteTransport()
    manifest = sign_manifest(["n1", "n2", "evil"])
    n1 = SyncNode(tmp_path, "n1", clock, transport, manifest=manifest)
    n2 = SyncNode(tmp_path, "n2", clock, transport, manifest=manifest)
    hostile = Hostile(clock)
    transport.handlers["evil.peers.invalid:80"] = hostile
    for node in (n1, n2):
        node.start()
    for i in range(100):
        n2.put(f"h{i}.mesh.test", f"v{i}")
    run(clock, [n1, n2], ticks=2)
    names = {name for name, _ in n1.records()}
    assert not any(n.startswith(("id-", "big.", "unrequested.", "future.")) for n in names)
    assert "fine.mesh.test" in names      # a valid plain record from that peer is fine
    assert len([n for n in names if n.startswith("h")]) == 100
    evil = n1.state("evil")
    assert evil.rejected["invalid_record"] >= 1
    assert evil.rejected["value_size"] >= 1
    assert evil.rejected["future"] >= 1
    assert evil.rejected["bad_cursor"] >= 1
    assert evil.rejected["unrequested"] >= 1
    assert evil.cursor.ts_ms < NOW * 1000 + 60_000     # never pushed into the future
    assert n1.metric("dmfdns_sync_records_rejected_total", peer="evil",
                     reason="invalid_record") >= 1
    assert n1.metric("dmfdns_writes_refused_total", path="sync", reason="value_size") >= 1
    hostile.mode = "malformed"
    n2.put("later.mesh.test", "still-flows")
    run(clock, [n1, n2], ticks=1)
    assert ("later.mesh.test", "still-flows") in n1.records()
    assert n1.state("evil").errors["malformed"] >= 1


def test_a_peer_that_never_answers_does_not_hold_up_the_others(tmp_path):
    clock = ClusterReactor()
    transport = SiteTransport()
    manifest = sign_manifest(["n1", "n2", "slow"])
    n1 = SyncNode(tmp_path, "n1", clock, transport, manifest=manifest)
    n2 = SyncNode(tmp_path, "n2", clock, transport, manifest=manifest)
    transport.handlers["slow.peers.invalid:80"] = lambda *a: defer.Deferred()
    n1.start()
    n2.put("a.mesh.test", "v")
    clock.advance(2)
    first = n1.cluster.tick()
    settle(clock)
    assert ("a.mesh.test", "v") in n1.records()
    clock.advance(60)                      # the slow peer's share times out
    assert first.called
    assert n1.state("slow").errors.get("timeout", 0) >= 1
    n2.put("b.mesh.test", "v")
    clock.advance(2)
    n1.cluster.tick()
    settle(clock)
    assert ("b.mesh.test", "v") in n1.records()


# --- manifest gossip --------------------------------------------------------------------------

def test_a_newer_manifest_reaches_every_node_within_two_intervals(tmp_path):
    clock, _, nodes = make_cluster(tmp_path)
    start(nodes)
    n1, n2, n3 = nodes.values()
    newer = sign_manifest(["n1", "n2", "n3", "n4"], seq=2)
    # The operator's rollout: the new manifest lands in one node's store (dmfdns manifest
    # publish POSTs it to /v1/records/cluster.<base>, which admits it with the pinned key).
    n1.store.put(owners.cluster(BASE), newer, expiry=clock.seconds() + 3600,
                 now=clock.seconds())
    run(clock, nodes.values(), ticks=2)
    for node in nodes.values():
        assert node.cluster.keeper.current[1].seq == 2
        assert set(node.cluster.anti_entropy.states) == {"n1", "n2", "n3", "n4"} - {
            node.node_id}
        assert node.metric("dmfdns_cluster_manifest_seq") == 2


def test_rollback_expired_and_forged_manifests_are_refused_and_the_old_stays(tmp_path):
    clock = ClusterReactor()
    transport = SiteTransport()
    current = sign_manifest(["n1", "liar"], seq=5)
    n1 = SyncNode(tmp_path, "n1", clock, transport, manifest=current)
    offers = [sign_manifest(["n1", "liar", "x"], seq=4),                     # rollback
              sign_manifest(["n1", "x"], seq=9, exp=int(NOW) - 10),          # expired
              sign_manifest(["n1", "x"], seq=9, signer=Signer(b"\x09" * 32)),  # other key
              sign_manifest(["n1", "x"], seq=9)[:-6] + "AAAAAA",              # bad signature
              sign_manifest(["n1", "x"], seq=9, name="other.test")]          # other cluster
    served = iter(offers)
    transport.handlers["liar.peers.invalid:80"] = lambda method, path, *a: (
        json_response(200, {"wire": next(served), "seq": 9, "exp": 0, "cluster_name": BASE})
        if "cluster-manifest" in path else json_response(200, {"records": [],
                                                                "has_more": False}))
    n1.start()
    for _ in offers[1:]:
        run(clock, [n1], ticks=1)
    keeper = n1.cluster.keeper
    assert keeper.current[1].seq == 5
    assert keeper.rejected == {"rollback": 1, "expired": 1, "invalid": 2, "too_far": 0,
                               "wrong_cluster": 1}
    assert set(n1.cluster.anti_entropy.states) == {"liar"}
    assert n1.metric("dmfdns_cluster_manifest_rejected_total", reason="invalid") == 2


def test_sync_endpoints_refuse_a_wrong_token(tmp_path):
    clock = ClusterReactor()
    transport = SiteTransport()
    manifest = sign_manifest(["n1", "n2"])
    n1 = SyncNode(tmp_path, "n1", clock, transport, manifest=manifest)
    SyncNode(tmp_path, "n2", clock, transport, manifest=manifest, token="another-token")
    n1.start()
    run(clock, [n1], ticks=1)
    assert n1.state("n2").errors == {"forbidden": 2}     # the start tick and one more
    assert TOKEN != "another-token"
    assert url_of("n2") == n1.state("n2").peer.url


def test_catch_up_is_pipelined_next_page_asked_and_four_pulls_in_flight(tmp_path):
    clock, transport, nodes = make_cluster(tmp_path, ("n1", "n2"),
                                           budget=Budget(page_limit=2000))
    n1, n2 = nodes["n1"], nodes["n2"]
    n1.start()
    n2.start()
    now = clock.seconds()       # one transaction: one log time, stable 1 s later
    n1.store.put_many([(f"p{i}.mesh.test", f"value {i}", now + 3600) for i in range(5000)],
                      now=now)
    host = urlsplit(url_of("n1")).netloc
    held, asked = [], []

    def slow_pulls(method, path, headers, body):
        del transport.handlers[host]          # the real site answers; pulls are held back
        try:
            answer = transport.deliver("n2", method, f"http://{host}{path}", headers, body)
        finally:
            transport.handlers[host] = slow_pulls
        asked.append(path.split("?")[0])
        if path.startswith("/v1/sync/pull"):
            later = defer.Deferred()
            held.append((later, answer))
            return later
        return answer
    transport.handlers[host] = slow_pulls
    clock.advance(2.0)
    done = n2.cluster.anti_entropy.tick()
    settle(clock)
    # Page 1 (2,000 names: 8 pulls) is being pulled, four at a time, and page 2 was already
    # asked for.
    assert asked.count("/v1/sync/digest") == 2 and len(held) == 4
    while held:
        later, answer = held.pop(0)
        answer.addCallback(later.callback)
        settle(clock)
        assert len(held) <= 4
    assert done.called
    assert asked.count("/v1/sync/pull") == 20 and n2.records() == n1.records()
    n1.stop()
    n2.stop()


def test_the_sync_loop_waits_the_interval_from_each_start_but_not_while_behind():
    from twisted.internet import task
    from dmfdns.sync.service import CATCH_UP_PAUSE, SyncLoop
    clock, starts, behind, running = task.Clock(), [], [False], []

    def tick():
        starts.append(clock.seconds())
        running.append(defer.Deferred())
        return running[-1]
    loop = SyncLoop(clock, 10.0, tick, lambda: behind[0])
    loop.startService()
    clock.advance(3.0)
    running[-1].callback(None)            # a 3 s tick: the next starts 10 s after this one
    clock.advance(6.9)
    assert starts == [0.0]
    clock.advance(0.1)
    assert starts == [0.0, 10.0]
    clock.advance(12.0)
    running[-1].callback(None)            # it overran: the next starts at once, no skipping
    clock.advance(0)
    assert starts == [0.0, 10.0, 22.0]
    behind[0] = True
    running[-1].callback(None)            # a peer is behind: almost at once
    clock.advance(CATCH_UP_PAUSE)
    assert starts[-1] == 22.0 + CATCH_UP_PAUSE
    stopped = loop.stopService()
    assert not stopped.called
    running[-1].callback(None)
    assert stopped.called and not clock.getDelayedCalls()
