"""Group commit (dmfdns.group_commit): writes queued in one reactor turn share one durable
transaction; each is answered only after it, a write refused alone fails alone, and a
commit that fails answers every write of its batch with the error."""

from twisted.internet import error, task
from twisted.python import failure

from dmfdns.group_commit import CommitLimits, GroupCommitter
from dmfdns.store.api import StoreError, StoreFull, Value
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.memory_store import MemoryStore
from dmfdns.store.writes import DELETE, PUBLISH, Accepted, WriteService

from http_support import Harness, request_bytes

NOW = 1_800_000_000.0


class CountingStore:
    """A store that counts its write transactions."""

    def __init__(self, store):
        self.store, self.transactions = store, 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def write_many(self, ops, *, now):
        self.transactions += 1
        return self.store.write_many(ops, now=now)


def committer_over(store, clock, limits=CommitLimits()) -> GroupCommitter:
    return GroupCommitter(WriteService(store, zones=("mesh.test",)).commit, clock, limits)


def Put(name, value, expiry):
    """An admitted publish (admission itself is tested in test_store_writes)."""
    return Accepted(PUBLISH, name, value, expiry)


def Remove(name, value=None):
    return Accepted(DELETE, name, value)


def outcomes(deferreds) -> list:
    """Each Deferred's result, or the class of its failure (consumed)."""
    found = []
    for d in deferreds:
        d.addCallbacks(found.append, lambda failure: found.append(failure.type))
    return found


def test_writes_of_one_turn_share_one_commit_and_are_answered_after_it():
    clock = task.Clock()
    clock.advance(NOW)
    store = CountingStore(MemoryStore(node_id="a"))
    committer = committer_over(store, clock)
    pending = [committer.submit(Put(f"n{i}.mesh.test", f"v{i}", NOW + 60)) for i in range(50)]
    assert not any(d.called for d in pending) and store.transactions == 0
    clock.advance(0)
    assert outcomes(pending) == [1] * 50
    assert store.transactions == 1 and committer.commits == 1 and committer.writes == 50
    assert store.get("n49.mesh.test", NOW) == [Value("v49", NOW + 60)]


def test_a_refused_write_fails_alone_and_the_others_are_applied_and_answered():
    clock = task.Clock()
    clock.advance(NOW)
    store = CountingStore(MemoryStore(node_id="a"))
    store.put("gone.mesh.test", "old", expiry=NOW + 60, now=NOW)
    committer = committer_over(store, clock)
    pending = [committer.submit(Put("a.mesh.test", "one", NOW + 60)),
               committer.submit(Put("not a name!", "two", NOW + 60)),
               committer.submit(Put("b.mesh.test", "x" * 70_000, NOW + 60)),
               committer.submit(Remove("gone.mesh.test")),
               committer.submit(Put("c.mesh.test", "three", NOW + 60))]
    clock.advance(0)
    assert outcomes(pending) == [1, StoreError, StoreError, 1, 1]
    # The batch failed as a whole, then each write went alone: one per write.
    assert store.transactions == 1 + 5
    assert [v.value for v in store.get("a.mesh.test", NOW)] == ["one"]
    assert [v.value for v in store.get("c.mesh.test", NOW)] == ["three"]
    assert store.get("b.mesh.test", NOW) == [] and store.get("gone.mesh.test", NOW) == []


def test_a_failed_commit_answers_every_write_with_the_error_and_applies_none(tmp_path):
    clock = task.Clock()
    clock.advance(NOW)
    store = LmdbStore(tmp_path / "db", map_size=1 << 20, node_id="a")
    try:
        committer = committer_over(store, clock)
        # Fill most of the 1 MiB map in commits that fit.
        for batch in range(3):
            filled = [committer.submit(Put(f"f{batch}-{i}.mesh.test", "f" * 6000, NOW + 60))
                      for i in range(10)]
            clock.advance(0)
            assert outcomes(filled) == [1] * 10
        used = store.stats().map_used_bytes
        pending = [committer.submit(Put(f"big{i}.mesh.test", f"{i}" * 60_000, NOW + 60))
                   for i in range(8)]
        clock.advance(0)
        assert outcomes(pending) == [StoreFull] * 8
        assert committer.failed_commits == 1
        assert all(store.get(f"big{i}.mesh.test", NOW) == [] for i in range(8))
        assert store.stats().map_used_bytes == used
        # Reads go on, and a small write still commits.
        assert store.get("f0-0.mesh.test", NOW)[0].value == "f" * 6000
        small = committer.submit(Put("small.mesh.test", "s", NOW + 60))
        clock.advance(0)
        assert outcomes([small]) == [1]
    finally:
        store.close()


def test_on_a_full_store_the_deletes_of_a_refused_batch_still_commit(tmp_path):
    clock = task.Clock()
    clock.advance(NOW)
    store = LmdbStore(tmp_path / "db", map_size=1 << 20, node_id="a")
    try:
        committer = committer_over(store, clock)
        written = 0
        while True:
            pending = committer.submit(Put(f"f{written}.mesh.test", "f" * 2000, NOW + 60))
            clock.advance(0)
            if outcomes([pending]) != [1]:
                break
            written += 1
        mixed = [committer.submit(Put("more.mesh.test", "m" * 2000, NOW + 60)),
                 committer.submit(Remove("f0.mesh.test")),
                 committer.submit(Remove("f1.mesh.test", "f" * 2000))]
        clock.advance(0)
        assert outcomes(mixed) == [StoreFull, 1, 1]
        assert store.get("f0.mesh.test", NOW) == [] and store.get("more.mesh.test", NOW) == []
    finally:
        store.close()


def test_a_full_batch_commits_at_once_and_a_delay_waits():
    clock = task.Clock()
    clock.advance(NOW)
    store = CountingStore(MemoryStore(node_id="a"))
    committer = committer_over(store, clock, CommitLimits(max_records=3, max_delay=0.005))
    pending = [committer.submit(Put(f"n{i}.mesh.test", "v", NOW + 60)) for i in range(4)]
    assert [d.called for d in pending] == [True, True, True, False]
    clock.advance(0.004)
    assert not pending[3].called
    clock.advance(0.002)
    assert pending[3].called and store.transactions == 2


def test_http_posts_read_in_one_turn_share_a_commit_and_a_refusal_stays_alone():
    node = Harness()
    connections = [node.connect(port=41000 + i) for i in range(6)]
    bodies = [{"value": f"v{i}", "ttl": 60} for i in range(6)]
    bodies[2] = {"value": "v=dmp1;t=identity;d=not-base64!", "ttl": 60}
    for i, (connection, body) in enumerate(zip(connections, bodies)):
        connection.clock = None        # the clock moves once, below: one reactor turn
        connection.send(request_bytes("POST", f"/v1/records/w{i}.mesh.test", body))
    assert [len(c.responses()) for c in connections] == [0, 0, 1, 0, 0, 0]
    assert connections[2].responses()[0].status == 400
    node.clock.advance(0)
    assert [c.responses()[0].status for c in connections] == [201, 201, 400, 201, 201, 201]
    assert node.http.records.committer.commits == 1
    assert node.http.records.committer.writes == 5
    assert [v.value for v in node.store.get("w5.mesh.test", node.clock.seconds())] == ["v5"]


def test_a_client_gone_before_the_commit_does_not_break_the_others():
    node = Harness()
    first, second = node.connect(port=41000), node.connect(port=41001)
    for connection, name in ((first, "x"), (second, "y")):
        connection.clock = None
        connection.send(request_bytes("POST", f"/v1/records/{name}.mesh.test",
                                      {"value": name}))
    first.channel.connectionLost(failure.Failure(error.ConnectionDone()))
    node.clock.advance(0)
    assert second.responses()[0].status == 201
    # The write of the client that left is still applied (it was admitted).
    assert [v.value for v in node.store.get("x.mesh.test", node.clock.seconds())] == ["x"]


class ManualRunner:
    """``run`` for the committer that holds each call until the test releases it, as a
    thread pool would hold a commit until the disk answers."""

    def __init__(self):
        self.calls = []

    def __call__(self, fn, *args, **kwargs):
        from twisted.internet import defer
        done = defer.Deferred()
        self.calls.append((fn, args, kwargs, done))
        return done

    def finish(self, index=0):
        fn, args, kwargs, done = self.calls.pop(index)
        try:
            result = fn(*args, **kwargs)
        except Exception:
            done.errback(failure.Failure())
        else:
            done.callback(result)


def test_a_commit_off_the_reactor_runs_one_batch_at_a_time_and_answers_after_it():
    clock = task.Clock()
    clock.advance(NOW)
    store = CountingStore(MemoryStore(node_id="a"))
    runner = ManualRunner()
    committer = GroupCommitter(WriteService(store, zones=("mesh.test",)).commit, clock,
                               run=runner)
    first = outcomes([committer.submit(Put("a.mesh.test", "v", NOW + 60))])
    clock.advance(0)
    assert len(runner.calls) == 1 and first == [] and store.transactions == 0
    later = outcomes([committer.submit(Put(f"n{i}.mesh.test", "v", NOW + 60))
                      for i in range(3)])
    clock.advance(0)
    assert len(runner.calls) == 1                  # the next batch waits for this one
    runner.finish()
    assert first == [1] and store.transactions == 1 and later == []
    assert len(runner.calls) == 1                  # the three went as one batch
    stopped = committer.stop()
    assert not stopped.called                      # the store must not close under it
    runner.finish()
    assert later == [1, 1, 1] and store.transactions == 2 and stopped.called


def test_a_commit_that_fails_in_the_thread_fails_its_writes():
    clock = task.Clock()
    clock.advance(NOW)

    def full(accepted, *, now):
        raise StoreFull("full")
    runner = ManualRunner()
    committer = GroupCommitter(full, clock, run=runner)
    found = outcomes([committer.submit(Put("a.mesh.test", "v", NOW + 60))])
    clock.advance(0)
    runner.finish()
    assert found == [StoreFull] and committer.failed_commits == 1


def test_a_batch_of_deletes_only_commits_on_the_reactor_thread():
    # LmdbStore widens its map for removals, which must not happen while the reactor reads.
    clock = task.Clock()
    clock.advance(NOW)
    store = CountingStore(MemoryStore(node_id="a"))
    store.put("a.mesh.test", "v", expiry=NOW + 60, now=NOW)
    runner = ManualRunner()
    committer = GroupCommitter(WriteService(store, zones=("mesh.test",)).commit, clock,
                               run=runner)
    found = outcomes([committer.submit(Remove("a.mesh.test", "v"))])
    clock.advance(0)
    assert runner.calls == [] and found == [1] and store.transactions == 1
