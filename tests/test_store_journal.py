"""The zone-transfer journal and zone snapshots, on MemoryStore and LmdbStore alike.

The invariant a secondary relies on: the snapshot of generation g, with the journal's
condensed difference g..G applied, equals the snapshot of G.
"""

import hashlib
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from dmfdns.store import journal
from dmfdns.store.api import Change
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.memory_store import MemoryStore

T0 = 1_700_000_000.0
MAP_SIZE = 64 * 1024 * 1024
ZONE = "mesh.test"


@pytest.fixture(params=["memory", "lmdb"])
def make_store(request, tmp_path):
    made, counter = [], itertools.count()

    def make(journal_limit=1000):
        if request.param == "memory":
            store = MemoryStore(node_id="n1", journal_limit=journal_limit)
        else:
            store = LmdbStore(tmp_path / f"db{next(counter)}", map_size=MAP_SIZE,
                              node_id="n1", journal_limit=journal_limit)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def fill(store, count: int, expiry: float) -> None:
    for index in range(count):
        store.put(f"n{index}.mesh.test", "v", expiry=expiry, now=T0)


def named(pairs, origin=ZONE) -> list:
    """Snapshot pairs ``(labels below the apex, value)`` as ``(name, value)``."""
    return [(".".join([label.decode() for label in labels] + [origin]), value)
            for labels, value in pairs]


def rest_of(snap, batch: int) -> list:
    found = []
    while not snap.done:
        found.extend(snap.batch(batch))
    return found


def snapshot_set(store, origin=ZONE, batch=3):
    snap = store.zone_snapshot(origin)
    try:
        found = set()
        while not snap.done:
            found.update(named(snap.batch(batch), origin))
        return snap.generation, found
    finally:
        snap.close()


def test_put_delete_and_sweep_are_journalled_as_net_differences(make_store):
    store = make_store()
    store.put("a.mesh.test", "one", expiry=T0 + 100, now=T0)
    base, before = snapshot_set(store)
    store.put("b.mesh.test", "two", expiry=T0 + 5, now=T0 + 1)
    store.put("a.mesh.test", "one", expiry=T0 + 200, now=T0 + 2)     # refresh: no content
    store.delete("a.mesh.test", "one", now=T0 + 3)
    store.put("c.mesh.test", "gone", expiry=T0 + 100, now=T0 + 3)
    store.delete("c.mesh.test", now=T0 + 4)                         # added then deleted
    assert store.sweep(T0 + 10, 100) >= 1                           # b expires
    current, diff = store.journal_since(base)
    assert current == store.generation() > base
    deleted, added = diff
    assert set(deleted) == {("a.mesh.test", b"one")}
    assert added == []
    gen, after = snapshot_set(store)
    assert gen == current
    assert after == (before - set(deleted)) | set(added)


def test_snapshot_ignores_expiry_until_the_sweep(make_store):
    store = make_store()
    store.put("x.mesh.test", "v", expiry=T0 + 5, now=T0)
    # Expired but not swept: still present, as the serial has not moved.
    assert snapshot_set(store)[1] == {("x.mesh.test", b"v")}
    store.sweep(T0 + 10, 10)
    assert snapshot_set(store)[1] == set()


def test_snapshot_stays_on_its_generation_while_writes_go_on(make_store):
    store = make_store()
    fill(store, 20, T0 + 100)
    snap = store.zone_snapshot(ZONE)
    try:
        first = snap.batch(5)
        for index in range(20, 40):
            store.put(f"n{index}.mesh.test", "v", expiry=T0 + 100, now=T0)
        store.delete("n19.mesh.test", now=T0)
        rest = rest_of(snap, 5)
        names = {name for name, _ in named(first + rest)}
        assert names == {f"n{index}.mesh.test" for index in range(20)}
    finally:
        snap.close()


def test_snapshot_keeps_to_the_zone(make_store):
    store = make_store()
    store.put("mesh.test", "apex", expiry=T0 + 100, now=T0)
    store.put("deep.a.mesh.test", "in", expiry=T0 + 100, now=T0)
    store.put("mesh.testing", "sibling", expiry=T0 + 100, now=T0)
    store.put("other.test", "out", expiry=T0 + 100, now=T0)
    assert snapshot_set(store)[1] == {("mesh.test", b"apex"), ("deep.a.mesh.test", b"in")}


def _peer(value, *, deleted=False, written=T0):
    return Change(ts_ms=int(written * 1000), name="r.mesh.test",
                  value_hash=hashlib.sha256(value.encode()).hexdigest(), value=value,
                  expiry=T0 + 100, deleted=deleted, origin="n2",
                  written_ms=int(written * 1000))


def test_replicated_changes_and_their_deletes_are_journalled(make_store):
    store = make_store()
    base = store.generation()
    assert store.apply_remote(_peer("peer"), T0)
    _, (deleted, added) = store.journal_since(base)
    assert (deleted, added) == ([], [("r.mesh.test", b"peer")])
    middle = store.generation()
    assert store.apply_remote(_peer("peer", deleted=True, written=T0 + 1), T0 + 1)
    _, (deleted, added) = store.journal_since(middle)
    assert (deleted, added) == ([("r.mesh.test", b"peer")], [])
    assert store.journal_since(base)[1] == ([], [])


def test_the_journal_is_bounded_and_refuses_what_it_no_longer_covers(make_store):
    store = make_store(journal_limit=5)
    base = store.generation()
    for index in range(10):
        store.put(f"n{index}.mesh.test", "v", expiry=T0 + 100, now=T0)
    assert store.journal_since(base)[1] is None                   # pruned
    recent = store.generation() - 3
    _, (deleted, added) = store.journal_since(recent)
    assert {name for name, _ in added} == {"n7.mesh.test", "n8.mesh.test", "n9.mesh.test"}
    assert store.journal_since(store.generation())[1] == ([], [])
    assert store.journal_since(store.generation() + 1)[1] is None  # from the future
    assert store.journal_since(-1)[1] is None


def test_no_journal_means_no_difference(make_store):
    store = make_store(journal_limit=0)
    base = store.generation()
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    assert store.journal_since(base)[1] is None


def test_a_gap_in_the_journal_refuses():
    entries = [(2, journal.encode([])), (4, journal.encode([]))]
    assert journal.condense(entries, 1, 4) is None
    assert journal.condense(entries[:1], 1, 2) == ([], [])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "delete", "sweep"]),
                          st.integers(0, 5), st.integers(0, 2)), max_size=30),
       st.integers(0, 30))
def test_snapshot_plus_difference_equals_the_later_snapshot(ops, split):
    store = MemoryStore(node_id="n1", journal_limit=10_000)
    now = T0
    snapshots = {}
    for index, (op, name_index, value_index) in enumerate(ops):
        if index == split:
            snapshots["base"] = snapshot_set(store)
        name, value = f"n{name_index}.mesh.test", f"v{value_index}"
        now += 1
        if op == "put":
            store.put(name, value, expiry=now + 3, now=now)
        elif op == "delete":
            store.delete(name, value, now=now)
        else:
            store.sweep(now, 100)
    base_gen, base_set = snapshots.get("base", snapshot_set(store))
    current, diff = store.journal_since(base_gen)
    deleted, added = diff
    assert set(deleted) <= base_set and not set(added) & base_set
    assert (base_set - set(deleted)) | set(added) == snapshot_set(store)[1]
    assert current == store.generation()


def test_group_commits_are_journalled(make_store):
    store = make_store()
    store.put("old.mesh.test", "v", expiry=T0 + 100, now=T0)
    base = store.generation()
    store.write_many([("put", "a.mesh.test", "x", T0 + 100),
                      ("delete", "old.mesh.test", None)], now=T0 + 1)
    _, (deleted, added) = store.journal_since(base)
    assert (deleted, added) == ([("old.mesh.test", b"v")], [("a.mesh.test", b"x")])


def test_removals_during_a_snapshot_leave_it_readable(make_store):
    store = make_store()
    fill(store, 10, T0 + 5)
    snap = store.zone_snapshot(ZONE)
    try:
        first = snap.batch(3)
        store.delete("n9.mesh.test", now=T0 + 1)
        assert store.sweep(T0 + 10, 100) == 10
        rest = rest_of(snap, 3)
        assert len(first + rest) == 10
    finally:
        snap.close()
    assert snapshot_set(store)[1] == set()
