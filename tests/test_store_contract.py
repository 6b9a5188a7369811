"""The RecordStore contract (docs/decisions.md §3): one suite run over MemoryStore and LmdbStore.

Every behaviour a caller relies on is asserted here for both stores; LMDB-only matters
(durability, map full, reopen, read-only handles) are in test_store_lmdb.py. Times are
injected unix seconds.
"""

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.dns import rrblob
from dmfdns.proto import txt
from dmfdns.store import changelog
from dmfdns.store.api import ApplyResult, Change, Cursor, StoreError, Value
from dmfdns.store.engine import ENT_PROBE
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.memory_store import MemoryStore

T0 = 1_700_000_000.0
MAP_SIZE = 64 * 1024 * 1024
LATER = T0 + 40       # a reader time past the stable horizon of the writes at T0..T0+39


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(params=["memory", "lmdb"])
def new_store(request, tmp_path):
    """A factory of empty stores of the parametrised kind; all closed at teardown."""
    made, counter = [], itertools.count()

    def make(node_id="n1"):
        if request.param == "memory":
            store = MemoryStore(node_id=node_id)
        else:
            store = LmdbStore(tmp_path / f"db{next(counter)}", map_size=MAP_SIZE,
                              node_id=node_id)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(new_store):
    return new_store()


def all_changes(store, now=LATER, limit=1000):
    return list(store.changes_after(Cursor(), limit, now=now).changes)


def remote(name, value, *, written, expiry, origin="n2", deleted=False, ts=None):
    return Change(ts_ms=written if ts is None else ts, name=name, value_hash=sha(value),
                  value=value, expiry=expiry, deleted=deleted, origin=origin,
                  written_ms=written)


def replicate(source, target, now, page=7):
    """Page through ``source``'s log and merge it into ``target`` (a sync worker): both
    nodes at time ``now``, so writes younger than the stable horizon wait for a later sync."""
    cursor = Cursor()
    while True:
        found = source.changes_after(cursor, page, now=now)
        target.apply_remote_many(found.changes, now)
        cursor = found.next_cursor
        if not found.has_more:
            return


# names and values

def test_put_then_get_returns_the_value_and_its_expiry(store):
    assert store.put("id-abc.mesh.test", "v=dmp1;t=identity;x", expiry=T0 + 300, now=T0)
    assert store.get("id-abc.mesh.test", T0 + 1) == [Value("v=dmp1;t=identity;x", T0 + 300)]
    assert store.get("other.mesh.test", T0 + 1) == []


def test_names_are_canonicalised_on_every_call(store):
    store.put("Slot-3.MB-AB.Mesh.Test.", "hello", expiry=T0 + 60, now=T0)
    assert store.get("slot-3.mb-ab.mesh.test", T0) == [Value("hello", T0 + 60)]
    assert store.packed_txt("SLOT-3.mb-ab.mesh.test.") is not None
    assert store.has_descendants("MB-AB.MESH.TEST.", T0)
    assert [c.name for c in store.changes_for("slot-3.MB-ab.mesh.test", T0)] == [
        "slot-3.mb-ab.mesh.test"]
    assert store.delete("slot-3.mb-ab.MESH.test.", "hello", now=T0 + 1) == 1
    assert store.get("slot-3.mb-ab.mesh.test", T0 + 1) == []


BAD_NAMES = ["", ".", "a..b", "-a.test", "a-.test", "a" * 64 + ".test", "é.test",
             "a b.test", 42, None, ("x" * 60 + ".") * 5]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
@pytest.mark.parametrize("call", [
    lambda s, n: s.put(n, "v", expiry=T0 + 1, now=T0),
    lambda s, n: s.put_many([(n, "v", T0 + 1)], now=T0),
    lambda s, n: s.delete(n, now=T0),
    lambda s, n: s.get(n, T0),
    lambda s, n: s.packed_txt(n),
    lambda s, n: s.has_descendants(n, T0),
    lambda s, n: s.changes_for(n, T0),
], ids=["put", "put_many", "delete", "get", "packed_txt", "has_descendants", "changes_for"])
def test_a_name_that_is_not_canonicalisable_is_a_store_error(store, name, call):
    with pytest.raises(StoreError):
        call(store, name)


@pytest.mark.parametrize("value", ["héllo", b"bytes", None, 7, "x" * 65_001])
def test_values_must_be_ascii_text(store, value):
    with pytest.raises(StoreError):
        store.put("a.mesh.test", value, expiry=T0 + 1, now=T0)
    assert store.generation() == 0


@pytest.mark.parametrize("expiry", [float("nan"), float("inf"), -1, "10", None, True])
def test_a_bad_expiry_is_a_store_error(store, expiry):
    with pytest.raises(StoreError):
        store.put("a.mesh.test", "v", expiry=expiry, now=T0)


def test_an_identical_value_refreshes_its_expiry_and_the_maximum_wins(store):
    assert store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    assert not store.put("a.mesh.test", "v", expiry=T0 + 50, now=T0 + 1)
    assert store.get("a.mesh.test", T0 + 2) == [Value("v", T0 + 100)]
    assert store.put("a.mesh.test", "v", expiry=T0 + 200, now=T0 + 2)
    assert store.get("a.mesh.test", T0 + 3) == [Value("v", T0 + 200)]


def test_a_name_holds_a_set_of_values_in_insertion_order(store):
    for value in ("b", "a", "c"):
        store.put("a.mesh.test", value, expiry=T0 + 100, now=T0)
    store.put("a.mesh.test", "a", expiry=T0 + 500, now=T0 + 1)   # a refresh keeps its place
    assert [v.value for v in store.get("a.mesh.test", T0 + 2)] == ["b", "a", "c"]


def test_expired_values_are_never_returned(store):
    store.put("a.mesh.test", "short", expiry=T0 + 10, now=T0)
    store.put("a.mesh.test", "long", expiry=T0 + 100, now=T0)
    assert [v.value for v in store.get("a.mesh.test", T0 + 9.999)] == ["short", "long"]
    assert [v.value for v in store.get("a.mesh.test", T0 + 10)] == ["long"]
    assert store.get("a.mesh.test", T0 + 100) == []


def test_a_write_that_has_already_expired_changes_nothing(store):
    assert not store.put("a.mesh.test", "v", expiry=T0, now=T0)
    assert store.get("a.mesh.test", T0 - 1) == []
    assert store.generation() == 0


def test_packed_txt_is_the_rrblob_of_the_values(store):
    long_value = "x" * 300
    store.put("a.mesh.test", "hello", expiry=T0 + 10, now=T0)
    store.put("a.mesh.test", long_value, expiry=T0 + 20.5, now=T0)
    blob = store.packed_txt("a.mesh.test")
    assert list(rrblob.entries(blob)) == [
        ((T0 + 10) * 1000, txt.rdata(b"hello")),
        ((T0 + 20.5) * 1000, txt.rdata(long_value.encode())),
    ]
    # Expired entries may stay in the blob until swept; the responder filters them.
    assert [r for _, r in rrblob.live(blob, (T0 + 15) * 1000)] == [txt.rdata(long_value.encode())]


def test_packed_txt_is_none_for_a_name_without_values(store):
    assert store.packed_txt("nothing.mesh.test") is None


def test_each_write_rebuilds_the_blob(store):
    store.put("a.mesh.test", "one", expiry=T0 + 10, now=T0)
    store.put("a.mesh.test", "two", expiry=T0 + 10, now=T0)
    store.delete("a.mesh.test", "one", now=T0 + 1)
    assert [r for _, r in rrblob.entries(store.packed_txt("a.mesh.test"))] == [txt.rdata(b"two")]


# sweep

def test_sweep_removes_expired_values_in_bounded_batches(store):
    for i in range(10):
        store.put(f"n{i}.mesh.test", "v", expiry=T0 + 10 + i, now=T0)
    store.put("keep.mesh.test", "v", expiry=T0 + 1000, now=T0)
    assert store.sweep(T0 + 5, 100) == 0
    assert store.sweep(T0 + 100, 3) == 3
    assert store.sweep(T0 + 100, 3) == 3
    assert store.sweep(T0 + 100, 100) == 4
    assert store.sweep(T0 + 100, 100) == 0
    assert all(store.packed_txt(f"n{i}.mesh.test") is None for i in range(10))
    assert store.packed_txt("keep.mesh.test") is not None
    stats = store.stats()
    assert (stats.names, stats.values, stats.tombstones) == (1, 1, 0)


def test_sweep_removes_expired_entries_from_the_change_log(store):
    store.put("a.mesh.test", "v", expiry=T0 + 10, now=T0)
    store.put("b.mesh.test", "v", expiry=T0 + 1000, now=T0)
    store.sweep(T0 + 20, 10)
    assert [c.name for c in all_changes(store, now=T0 + 20)] == ["b.mesh.test"]


def test_sweep_removes_expired_tombstones(store):
    store.put("a.mesh.test", "v", expiry=T0 + 10, now=T0)
    store.delete("a.mesh.test", "v", now=T0 + 1)
    assert store.stats().tombstones == 1
    assert store.sweep(T0 + 9, 10) == 0
    assert store.sweep(T0 + 10, 10) == 1
    assert store.stats().tombstones == 0
    assert store.changes_for("a.mesh.test", T0) == []


def test_sweep_bumps_the_generation_only_when_it_removes_something(store):
    store.put("a.mesh.test", "v", expiry=T0 + 10, now=T0)
    before = store.generation()
    store.sweep(T0 + 5, 10)
    assert store.generation() == before
    store.sweep(T0 + 10, 10)
    assert store.generation() > before


def test_sweep_limit_must_be_positive(store):
    with pytest.raises(StoreError):
        store.sweep(T0, 0)


# empty non-terminals

def test_has_descendants_finds_empty_non_terminals(store):
    store.put("slot-3.mb-abc123.mesh.test", "v", expiry=T0 + 60, now=T0)
    for name in ("mb-abc123.mesh.test", "mesh.test", "test"):
        assert store.has_descendants(name, T0 + 1), name
    assert store.packed_txt("mb-abc123.mesh.test") is None


def test_has_descendants_is_strictly_below(store):
    store.put("mb-abc.mesh.test", "v", expiry=T0 + 60, now=T0)
    assert not store.has_descendants("mb-abc.mesh.test", T0)
    assert not store.has_descendants("x.mb-abc.mesh.test", T0)


def test_has_descendants_does_not_match_a_label_prefix(store):
    store.put("mb-abcd.mesh.test", "v", expiry=T0 + 60, now=T0)
    store.put("x.mb-abcd.mesh.test", "v", expiry=T0 + 60, now=T0)
    assert not store.has_descendants("mb-abc.mesh.test", T0)
    assert not store.has_descendants("abcd.mesh.test", T0)


def test_expired_or_deleted_descendants_do_not_count(store):
    store.put("a.ent.mesh.test", "v", expiry=T0 + 10, now=T0)
    store.put("b.ent.mesh.test", "v", expiry=T0 + 100, now=T0)
    assert store.has_descendants("ent.mesh.test", T0 + 20)
    store.delete("b.ent.mesh.test", now=T0 + 30)
    assert not store.has_descendants("ent.mesh.test", T0 + 30)


def test_a_subtree_of_many_expired_names_counts_until_swept(store):
    # The documented trade-off: only ENT_PROBE descendants are checked for liveness.
    for i in range(ENT_PROBE + 1):
        store.put(f"n{i}.ent.mesh.test", "v", expiry=T0 + 10, now=T0)
    assert store.has_descendants("ent.mesh.test", T0 + 20)
    store.sweep(T0 + 20, 100)
    assert not store.has_descendants("ent.mesh.test", T0 + 20)


# names with a label prefix (one parent)

H16 = "0123456789abcdef"


def put_names(store, *names, expiry=T0 + 60):
    for name in names:
        store.put(name, "v", expiry=expiry, now=T0)


def test_names_with_prefix_lists_the_children_whose_label_starts_with_it(store):
    put_names(store, f"id-{H16}.mesh.test", "id-0123456789ab0000.mesh.test",
              "id-0123456789ac0000.mesh.test", "id-01.mesh.test", "xid-0123456789ab.mesh.test",
              "prekeys.id-0123456789ab.mesh.test")
    assert store.names_with_prefix("mesh.test", "id-0123456789ab", now=T0 + 1, limit=10) == [
        "id-0123456789ab0000.mesh.test", f"id-{H16}.mesh.test"]
    assert store.names_with_prefix("mesh.test", "id-", now=T0 + 1, limit=10) == [
        "id-01.mesh.test", "id-0123456789ab0000.mesh.test", f"id-{H16}.mesh.test",
        "id-0123456789ac0000.mesh.test"]


def test_names_with_prefix_stays_within_one_parent(store):
    put_names(store, f"id-{H16}.mesh.test", f"id-{H16}.other.test", f"id-{H16}.sub.mesh.test",
              f"x.id-{H16}.mesh.test", f"y.z.id-{H16}0.mesh.test", "id-0123.mesh.test.x")
    assert store.names_with_prefix("mesh.test", "id-0123", now=T0 + 1, limit=10) == [
        f"id-{H16}.mesh.test"]
    assert store.names_with_prefix("sub.mesh.test", "id", now=T0 + 1, limit=10) == [
        f"id-{H16}.sub.mesh.test"]
    # Children that hold nothing themselves (empty non-terminals: y, sub) are not listed.
    assert store.names_with_prefix("mesh.test", "y", now=T0 + 1, limit=10) == []
    assert store.names_with_prefix("mesh.test", "", now=T0 + 1, limit=10) == [
        f"id-{H16}.mesh.test"]


def test_names_with_prefix_lists_the_parent_children_with_an_empty_prefix(store):
    put_names(store, "b.mesh.test", "a.mesh.test", "mesh.test", "c.a.mesh.test")
    assert store.names_with_prefix("mesh.test", "", now=T0 + 1, limit=10) == [
        "a.mesh.test", "b.mesh.test"]


def test_names_with_prefix_leaves_out_expired_deleted_and_tombstoned_names(store):
    put_names(store, "id-a1.mesh.test", expiry=T0 + 10)
    put_names(store, "id-a2.mesh.test", "id-a3.mesh.test", "id-a4.mesh.test")
    store.delete("id-a3.mesh.test", now=T0 + 1)
    store.put("id-a4.mesh.test", "w", expiry=T0 + 60, now=T0)
    store.delete("id-a4.mesh.test", "v", now=T0 + 1)
    assert store.names_with_prefix("mesh.test", "id-a", now=T0 + 20, limit=10) == [
        "id-a2.mesh.test", "id-a4.mesh.test"]


def test_names_with_prefix_is_bounded_by_limit_in_label_order(store):
    put_names(store, *(f"id-{i:02d}.mesh.test" for i in range(30)))
    assert store.names_with_prefix("mesh.test", "id-", now=T0 + 1, limit=3) == [
        "id-00.mesh.test", "id-01.mesh.test", "id-02.mesh.test"]
    assert len(store.names_with_prefix("mesh.test", "id-", now=T0 + 1, limit=1000)) == 30
    assert store.names_with_prefix("mesh.test", "id-1", now=T0 + 1, limit=20) == [
        f"id-{i}.mesh.test" for i in range(10, 20)]


def test_names_below_a_child_neither_match_nor_use_up_the_limit(store):
    # Many names below one child must not crowd out the children after it (the scan jumps
    # over the subtree).
    put_names(store, *(f"n{i}.id-0a.mesh.test" for i in range(50)), "id-0b.mesh.test")
    assert store.names_with_prefix("mesh.test", "id-0", now=T0 + 1, limit=1) == [
        "id-0b.mesh.test"]


def test_names_with_prefix_reads_one_key_per_child_not_per_descendant(monkeypatch):
    # The documented cost bound, observed on MemoryStore's tables (the scan is shared).
    store = MemoryStore()
    for child in ("id-0a", "id-0b", "id-0c"):
        put_names(store, child + ".mesh.test", *(f"n{i}.{child}.mesh.test" for i in range(40)))
    seeks = []
    original = type(store._tables).blob_at_or_after
    monkeypatch.setattr(type(store._tables), "blob_at_or_after",
                        lambda tables, key: seeks.append(key) or original(tables, key))
    assert store.names_with_prefix("mesh.test", "id-0", now=T0 + 1, limit=10) == [
        "id-0a.mesh.test", "id-0b.mesh.test", "id-0c.mesh.test"]
    assert len(seeks) <= 2 * 3 + 1


def test_names_with_prefix_canonicalises_parent_and_prefix(store):
    put_names(store, f"id-{H16}.mesh.test")
    assert store.names_with_prefix("Mesh.TEST.", "ID-0123", now=T0 + 1, limit=5) == [
        f"id-{H16}.mesh.test"]


@pytest.mark.parametrize("parent, prefix, limit", [
    ("a..b", "id", 5), (None, "id", 5), ("mesh.test", "id.x", 5), ("mesh.test", "é", 5),
    ("mesh.test", None, 5), ("mesh.test", "x" * 64, 5), ("mesh.test", "id", 0),
    ("mesh.test", "id", 1001), ("mesh.test", "id", True), ("mesh.test", "id", 2.0),
])
def test_names_with_prefix_refuses_bad_arguments(store, parent, prefix, limit):
    with pytest.raises(StoreError):
        store.names_with_prefix(parent, prefix, now=T0, limit=limit)


# the change log

def test_the_log_lists_every_change_once_in_commit_order(store):
    store.put("b.mesh.test", "1", expiry=T0 + 60, now=T0)
    store.put("a.mesh.test", "2", expiry=T0 + 60, now=T0 + 1)
    store.put("c.mesh.test", "3", expiry=T0 + 60, now=T0 + 2)
    changes = all_changes(store)
    assert [(c.name, c.value) for c in changes] == [
        ("b.mesh.test", "1"), ("a.mesh.test", "2"), ("c.mesh.test", "3")]
    assert [c.ts_ms for c in changes] == [T0 * 1000, (T0 + 1) * 1000, (T0 + 2) * 1000]
    assert all(c.value_hash == sha(c.value) and c.origin == "n1" and not c.deleted
               for c in changes)
    assert changes[0].expiry == T0 + 60


def test_log_time_never_goes_backwards_when_the_clock_does(store):
    store.put("a.mesh.test", "1", expiry=T0 + 600, now=T0 + 100)
    store.put("a.mesh.test", "2", expiry=T0 + 600, now=T0)       # clock stepped back
    store.put("a.mesh.test", "3", expiry=T0 + 600, now=T0 + 50)
    assert [c.ts_ms for c in all_changes(store, now=T0 + 200)] == [
        (T0 + 100) * 1000, (T0 + 100) * 1000 + 1, (T0 + 100) * 1000 + 2]


def test_log_time_runs_ahead_only_by_the_commits_in_one_millisecond(store):
    for i in range(5):
        store.put("a.mesh.test", str(i), expiry=T0 + 60, now=T0)
    store.put("a.mesh.test", "later", expiry=T0 + 60, now=T0 + 1)
    assert [c.ts_ms - T0 * 1000 for c in all_changes(store)] == [0, 1, 2, 3, 4, 1000]


def test_one_put_many_is_one_commit_with_one_log_time(store):
    assert store.put_many([(f"n{i}.mesh.test", "v", T0 + 60) for i in range(50)], now=T0) == 50
    changes = all_changes(store)
    assert len(changes) == 50
    assert {c.ts_ms for c in changes} == {T0 * 1000}
    assert [c.name for c in changes] == sorted(c.name for c in changes)


def test_readers_see_only_entries_older_than_the_stable_horizon(store):
    horizon = changelog.STABLE_HORIZON_MS / 1000
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    assert all_changes(store, now=T0) == []
    assert all_changes(store, now=T0 + horizon - 0.001) == []
    assert [c.value for c in all_changes(store, now=T0 + horizon)] == ["v"]


def test_pages_follow_the_cursor_until_has_more_is_false(store):
    store.put_many([(f"n{i:02}.mesh.test", "v", T0 + 60) for i in range(25)], now=T0)
    seen, cursor, pages = [], Cursor(), []
    while True:
        found = store.changes_after(cursor, 10, now=LATER)
        pages.append((len(found.changes), found.has_more))
        seen += found.changes
        cursor = found.next_cursor
        if not found.has_more:
            break
    assert pages == [(10, True), (10, True), (5, False)]
    assert [c.name for c in seen] == [f"n{i:02}.mesh.test" for i in range(25)]
    assert cursor == seen[-1].cursor


def test_an_empty_page_echoes_the_cursor(store):
    cursor = Cursor(123, "x.mesh.test", "ab" * 32)
    found = store.changes_after(cursor, 10, now=LATER)
    assert (found.changes, found.has_more, found.next_cursor) == ((), False, cursor)


def test_a_cursor_at_the_end_sees_records_committed_later(store):
    store.put("a.mesh.test", "1", expiry=T0 + 600, now=T0)
    first = store.changes_after(Cursor(), 100, now=T0 + 5)
    store.put("b.mesh.test", "2", expiry=T0 + 600, now=T0 + 5)
    store.put("c.mesh.test", "3", expiry=T0 + 600, now=T0 - 100)    # clock stepped back
    later = store.changes_after(first.next_cursor, 100, now=T0 + 10)
    assert [c.value for c in first.changes] == ["1"]
    assert [c.value for c in later.changes] == ["2", "3"]


def test_rewriting_a_value_moves_it_to_the_log_tail(store):
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    store.put("b.mesh.test", "w", expiry=T0 + 60, now=T0 + 1)
    store.put("a.mesh.test", "v", expiry=T0 + 90, now=T0 + 2)
    changes = all_changes(store)
    assert [(c.name, c.expiry) for c in changes] == [
        ("b.mesh.test", T0 + 60), ("a.mesh.test", T0 + 90)]


def test_the_log_holds_one_entry_per_value_and_tombstone(store):
    for i in range(20):
        store.put("a.mesh.test", "v", expiry=T0 + 100 + i, now=T0 + i)
    store.put("a.mesh.test", "w", expiry=T0 + 100, now=T0 + 30)
    store.delete("a.mesh.test", "w", now=T0 + 31)
    assert len(all_changes(store)) == 2


def test_the_log_skips_expired_entries(store):
    store.put("a.mesh.test", "short", expiry=T0 + 5, now=T0)
    store.put("b.mesh.test", "long", expiry=T0 + 500, now=T0)
    found = store.changes_after(Cursor(), 10, now=T0 + 50)
    assert [c.value for c in found.changes] == ["long"]


def test_a_page_steps_over_a_bounded_run_of_expired_entries(store):
    store.put_many([(f"old{i:03}.mesh.test", "v", T0 + 5) for i in range(400)], now=T0)
    store.put("new.mesh.test", "v", expiry=T0 + 500, now=T0 + 1)
    first = store.changes_after(Cursor(), 1, now=T0 + 10)
    assert first.changes == () and first.has_more
    assert first.next_cursor.ts_ms == T0 * 1000 and first.next_cursor.name.startswith("old")
    second = store.changes_after(first.next_cursor, 1, now=T0 + 10)
    assert [c.name for c in second.changes] == ["new.mesh.test"]
    assert not second.has_more


def test_the_log_can_leave_out_tombstones(store):
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    store.put("b.mesh.test", "w", expiry=T0 + 60, now=T0)
    store.delete("a.mesh.test", now=T0 + 1)
    with_all = store.changes_after(Cursor(), 10, now=LATER)
    values_only = store.changes_after(Cursor(), 10, now=LATER, tombstones=False)
    assert [(c.value, c.deleted) for c in with_all.changes] == [("w", False), ("v", True)]
    assert [c.value for c in values_only.changes] == ["w"]
    assert values_only.next_cursor == with_all.next_cursor


def test_the_legacy_since_cursor_returns_strictly_newer_entries(store):
    store.put("a.mesh.test", "1", expiry=T0 + 60, now=T0)
    store.put("b.mesh.test", "2", expiry=T0 + 60, now=T0 + 1)
    found = store.changes_after(changelog.since_cursor(int(T0 * 1000)), 10, now=LATER)
    assert [c.value for c in found.changes] == ["2"]


@pytest.mark.parametrize("limit", [0, -1, 10_001, 1.5, True])
def test_a_bad_page_limit_is_a_store_error(store, limit):
    with pytest.raises(StoreError):
        store.changes_after(Cursor(), limit, now=LATER)


@pytest.mark.parametrize("cursor", [None, (1, 2), ("1", "a", "b"), (1, "a\x00", "")])
def test_a_bad_cursor_is_a_store_error(store, cursor):
    with pytest.raises(StoreError):
        store.changes_after(cursor, 10, now=LATER)


def test_a_plain_tuple_works_as_a_cursor(store):
    store.put("a.mesh.test", "1", expiry=T0 + 60, now=T0)
    assert store.changes_after((0, "", ""), 10, now=LATER).changes[0].value == "1"


# tombstones and deletes

def test_delete_of_one_value_writes_a_tombstone_with_its_expiry(store):
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    store.put("a.mesh.test", "w", expiry=T0 + 60, now=T0)
    assert store.delete("a.mesh.test", "v", now=T0 + 1) == 1
    assert [v.value for v in store.get("a.mesh.test", T0 + 2)] == ["w"]
    tomb = [c for c in all_changes(store) if c.deleted]
    assert [(c.value, c.expiry, c.ts_ms, c.value_hash) for c in tomb] == [
        ("v", T0 + 60, (T0 + 1) * 1000, sha("v"))]


def test_delete_of_a_whole_name_tombstones_every_value(store):
    for value in ("a", "b", "c"):
        store.put("x.mesh.test", value, expiry=T0 + 60, now=T0)
    assert store.delete("x.mesh.test", now=T0 + 1) == 3
    assert store.get("x.mesh.test", T0 + 1) == []
    assert sorted(c.value for c in store.changes_for("x.mesh.test", T0 + 1) if c.deleted) == [
        "a", "b", "c"]


def test_deleting_what_is_not_there_changes_nothing(store):
    store.put("x.mesh.test", "a", expiry=T0 + 60, now=T0)
    before = store.generation()
    assert store.delete("x.mesh.test", "zzz", now=T0 + 1) == 0
    assert store.delete("nothing.mesh.test", now=T0 + 1) == 0
    store.delete("x.mesh.test", "a", now=T0 + 2)
    assert store.delete("x.mesh.test", "a", now=T0 + 3) == 0
    assert store.generation() == before + 1


def test_a_name_holding_only_tombstones_does_not_exist(store):
    store.put("slot-1.mb-x.mesh.test", "v", expiry=T0 + 60, now=T0)
    store.delete("slot-1.mb-x.mesh.test", now=T0 + 1)
    assert store.get("slot-1.mb-x.mesh.test", T0 + 1) == []
    assert store.packed_txt("slot-1.mb-x.mesh.test") is None
    assert not store.has_descendants("mb-x.mesh.test", T0 + 1)
    assert store.stats().names == 0


def test_republishing_after_a_delete_brings_the_value_back(store):
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    store.delete("a.mesh.test", "v", now=T0 + 1)
    assert store.put("a.mesh.test", "v", expiry=T0 + 30, now=T0 + 2)
    # Expiry merges as the maximum, also across a delete.
    assert store.get("a.mesh.test", T0 + 3) == [Value("v", T0 + 60)]
    assert [c.deleted for c in all_changes(store)] == [False]


# replication

def test_a_remote_change_is_stored_with_its_version_at_the_local_log_tail(store):
    change = remote("a.mesh.test", "v", written=int(T0 * 1000) - 5000, expiry=T0 + 60)
    assert store.apply_remote(change, T0)
    assert store.get("a.mesh.test", T0) == [Value("v", T0 + 60)]
    [logged] = all_changes(store)
    assert (logged.ts_ms, logged.written_ms, logged.origin) == (
        T0 * 1000, T0 * 1000 - 5000, "n2")


def test_applying_a_remote_change_is_idempotent(store):
    change = remote("a.mesh.test", "v", written=int(T0 * 1000), expiry=T0 + 60)
    assert store.apply_remote(change, T0)
    generation = store.generation()
    assert not store.apply_remote(change, T0 + 1)
    assert store.generation() == generation


def test_a_newer_remote_tombstone_deletes(store):
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    tomb = remote("a.mesh.test", "v", written=int(T0 * 1000) + 10, expiry=T0 + 60, deleted=True)
    assert store.apply_remote(tomb, T0 + 1)
    assert store.get("a.mesh.test", T0 + 1) == []
    assert store.packed_txt("a.mesh.test") is None


def test_an_older_remote_put_does_not_undo_a_delete_but_extends_the_tombstone(store):
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    store.delete("a.mesh.test", "v", now=T0 + 10)
    old_put = remote("a.mesh.test", "v", written=int(T0 * 1000) + 5000, expiry=T0 + 600)
    assert store.apply_remote(old_put, T0 + 11)
    assert store.get("a.mesh.test", T0 + 11) == []
    [state] = store.changes_for("a.mesh.test", T0 + 11)
    assert (state.deleted, state.expiry, state.origin) == (True, T0 + 600, "n1")


def test_a_newer_remote_put_revives_a_deleted_value(store):
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    store.delete("a.mesh.test", "v", now=T0 + 10)
    newer = remote("a.mesh.test", "v", written=int(T0 * 1000) + 20_000, expiry=T0 + 30)
    assert store.apply_remote(newer, T0 + 21)
    assert store.get("a.mesh.test", T0 + 21) == [Value("v", T0 + 60)]


def test_concurrent_events_at_the_same_time_break_on_the_origin(new_store):
    put = remote("a.mesh.test", "v", written=int(T0 * 1000), expiry=T0 + 60, origin="node-a")
    tomb = remote("a.mesh.test", "v", written=int(T0 * 1000), expiry=T0 + 60, origin="node-b",
                  deleted=True)
    first, second = new_store(), new_store()
    first.apply_remote(put, T0)
    first.apply_remote(tomb, T0)
    second.apply_remote(tomb, T0)
    second.apply_remote(put, T0)
    assert first.get("a.mesh.test", T0) == second.get("a.mesh.test", T0) == []


def test_a_local_delete_wins_over_a_put_it_has_seen_from_a_fast_clock(store):
    ahead = int(T0 * 1000) + 30_000     # the writer's clock runs 30 s ahead
    store.apply_remote(remote("a.mesh.test", "v", written=ahead, expiry=T0 + 600), T0)
    assert store.delete("a.mesh.test", "v", now=T0 + 1) == 1
    [state] = store.changes_for("a.mesh.test", T0 + 1)
    assert state.deleted and state.written_ms == ahead + 1
    other = MemoryStore(node_id="n3")
    other.apply_remote(remote("a.mesh.test", "v", written=ahead, expiry=T0 + 600), T0)
    other.apply_remote(state, T0 + 2)
    assert other.get("a.mesh.test", T0 + 2) == []


def test_an_expired_remote_change_is_ignored(store):
    assert not store.apply_remote(remote("a.mesh.test", "v", written=int(T0 * 1000),
                                         expiry=T0 - 1), T0)
    assert store.changes_for("a.mesh.test", T0 - 10) == []


def test_a_remote_tombstone_for_an_unknown_value_is_kept_to_replicate(store):
    tomb = remote("a.mesh.test", "v", written=int(T0 * 1000), expiry=T0 + 60, deleted=True)
    assert store.apply_remote(tomb, T0)
    assert store.get("a.mesh.test", T0) == []
    assert store.packed_txt("a.mesh.test") is None
    assert [c.deleted for c in all_changes(store)] == [True]


def test_a_change_without_write_time_uses_its_log_time(store):
    change = Change(ts_ms=int(T0 * 1000), name="a.mesh.test", value_hash=sha("v"), value="v",
                    expiry=T0 + 60, origin="dnsmesh-peer")
    assert store.apply_remote(change, T0)
    assert store.changes_for("a.mesh.test", T0)[0].written_ms == T0 * 1000


@pytest.mark.parametrize("change", [
    Change(ts_ms=1, name="a.mesh.test", value_hash=sha("other"), value="v", expiry=T0 + 60),
    remote("bad..name", "v", written=int(T0 * 1000), expiry=T0 + 60),
    remote("a.mesh.test", "v", written=int(T0 * 1000) + 61_000, expiry=T0 + 600),
    remote("a.mesh.test", "v", written=-1, expiry=T0 + 60),
    remote("a.mesh.test", "v", written=int(T0 * 1000), expiry=T0 + 60, origin="bad\nid"),
], ids=["hash-mismatch", "bad-name", "future", "negative-time", "bad-origin"])
def test_a_malformed_remote_change_is_refused(store, change):
    with pytest.raises(StoreError):
        store.apply_remote(change, T0)
    assert store.generation() == 0


def test_apply_remote_many_applies_the_good_and_reports_the_bad(store):
    good = [remote(f"n{i}.mesh.test", "v", written=int(T0 * 1000), expiry=T0 + 60)
            for i in range(3)]
    bad = remote("a.mesh.test", "v", written=int(T0 * 1000) + 600_000, expiry=T0 + 60)
    result = store.apply_remote_many([good[0], bad, good[1], good[2], good[0]], T0)
    assert isinstance(result, ApplyResult)
    assert result.changed == 3
    assert [(c, "future" in reason) for c, reason in result.rejected] == [(bad, True)]
    assert store.generation() == 1


def test_apply_remote_many_sets_meta_in_the_same_transaction(store):
    change = remote("n.mesh.test", "v", written=int(T0 * 1000), expiry=T0 + 60)
    with pytest.raises(StoreError):
        store.apply_remote_many([change], T0, meta={"store:generation": b"9"})
    assert store.generation() == 0 and store.get("n.mesh.test", T0) == []
    result = store.apply_remote_many([change], T0, meta={"sync:cursor:p": b"1:n:h"})
    assert result.changed == 1 and store.meta_get("sync:cursor:p") == b"1:n:h"
    store.apply_remote_many([], T0, meta={"sync:cursor:p": b"2:n:h"})   # a cursor alone
    assert store.meta_get("sync:cursor:p") == b"2:n:h"


def test_changes_for_lists_values_and_tombstones(store):
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    store.put("a.mesh.test", "w", expiry=T0 + 10, now=T0)
    store.put("a.mesh.test", "x", expiry=T0 + 60, now=T0)
    store.delete("a.mesh.test", "x", now=T0 + 1)
    assert [(c.value, c.deleted) for c in store.changes_for("a.mesh.test", T0 + 1)] == [
        ("v", False), ("w", False), ("x", True)]
    assert [c.value for c in store.changes_for("a.mesh.test", T0 + 20)] == ["v", "x"]


def test_three_nodes_converge_through_a_middle_node(new_store):
    a, b, c = new_store("a"), new_store("b"), new_store("c")
    a.put("x.mesh.test", "1", expiry=T0 + 600, now=T0)
    a.put("x.mesh.test", "2", expiry=T0 + 600, now=T0)
    c.put("x.mesh.test", "3", expiry=T0 + 600, now=T0 + 1)
    replicate(a, b, T0 + 5)
    replicate(b, c, T0 + 10)
    c.delete("x.mesh.test", "1", now=T0 + 11)
    replicate(c, b, T0 + 15)
    replicate(b, a, T0 + 20)
    for node in (a, b, c):
        assert sorted(v.value for v in node.get("x.mesh.test", T0 + 30)) == ["2", "3"]


# generation, meta, stats, put_many

def test_the_generation_grows_with_every_committed_change(store):
    assert store.generation() == 0
    store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
    one = store.generation()
    store.put("a.mesh.test", "v", expiry=T0 + 30, now=T0)        # nothing changes
    assert store.generation() == one
    store.put_many([("a.mesh.test", "w", T0 + 60), ("b.mesh.test", "w", T0 + 60)], now=T0)
    two = store.generation()
    store.delete("a.mesh.test", now=T0 + 1)
    assert one > 0 and two > one and store.generation() > two


def test_meta_values_round_trip(store):
    assert store.meta_get("sync:cursor:node-b") is None
    store.meta_set("sync:cursor:node-b", b"123:a.mesh.test:")
    store.meta_set("cluster:manifest", b"\x00\xffbinary")
    assert store.meta_get("sync:cursor:node-b") == b"123:a.mesh.test:"
    assert store.meta_get("cluster:manifest") == b"\x00\xffbinary"
    assert store.generation() == 0


@pytest.mark.parametrize("key, value", [("store:generation", b"9"), ("", b"x"),
                                        ("k", "text"), (7, b"x"), ("k" * 401, b"x")])
def test_bad_meta_writes_are_refused(store, key, value):
    with pytest.raises(StoreError):
        store.meta_set(key, value)
    assert store.generation() == 0


def test_stats_count_names_values_and_tombstones(store):
    store.put("a.mesh.test", "1", expiry=T0 + 60, now=T0)
    store.put("a.mesh.test", "2", expiry=T0 + 60, now=T0)
    store.put("b.mesh.test", "1", expiry=T0 + 60, now=T0)
    store.delete("b.mesh.test", now=T0 + 1)
    stats = store.stats()
    assert (stats.names, stats.values, stats.tombstones) == (1, 2, 1)
    assert stats.map_used_bytes <= stats.map_size_bytes


def test_put_many_counts_what_changed(store):
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    items = [("a.mesh.test", "v", T0 + 50), ("a.mesh.test", "w", T0 + 50),
             ("b.mesh.test", "v", T0 + 50), ("b.mesh.test", "v", T0 + 80)]
    assert store.put_many(items, now=T0 + 1) == 3
    assert store.get("b.mesh.test", T0 + 1) == [Value("v", T0 + 80)]


def test_put_many_refuses_the_whole_batch_for_one_bad_item(store):
    items = [("a.mesh.test", "v", T0 + 50), ("bad..name", "v", T0 + 50)]
    with pytest.raises(StoreError):
        store.put_many(items, now=T0)
    with pytest.raises(StoreError):
        store.put_many([("a.mesh.test", "v")], now=T0)
    assert store.get("a.mesh.test", T0) == []
    assert store.generation() == 0


def test_a_closed_store_raises_store_error(new_store):
    closed = new_store()
    closed.close()
    for call in (lambda: closed.get("a.mesh.test", T0), lambda: closed.packed_txt("a.test"),
                 lambda: closed.has_descendants("a.test", T0), closed.generation,
                 lambda: closed.put("a.test", "v", expiry=T0 + 1, now=T0)):
        with pytest.raises(StoreError):
            call()


# convergence: random histories on two nodes, synced at random points, end equal

NAMES = ["a.mesh.test", "b.a.mesh.test", "c.mesh.test"]
VALUES = ["x", "y", "z"]
operation = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 1), st.sampled_from(NAMES),
              st.sampled_from(VALUES), st.integers(1, 40)),
    st.tuples(st.just("delete"), st.integers(0, 1), st.sampled_from(NAMES),
              st.sampled_from(VALUES + [None]), st.just(0)),
    st.tuples(st.just("sync"), st.integers(0, 1), st.just(""), st.just(""), st.just(0)),
)


def state_of(store, now):
    return {(c.name, c.value): (c.deleted, c.expiry, c.written_ms, c.origin)
            for name in NAMES for c in store.changes_for(name, now)}


def converge_test(kind):
    """The convergence property for one store kind (two functions rather than a
    parametrised fixture, which pytest-twisted's hypothesis support cannot share)."""

    @settings(max_examples=40)
    @given(ops=st.lists(st.tuples(operation, st.integers(0, 3000)), max_size=25))
    def test(tmp_path_factory, ops):
        if kind == "memory":
            nodes = [MemoryStore(node_id="node-a"), MemoryStore(node_id="node-b")]
        else:
            nodes = [LmdbStore(tmp_path_factory.mktemp("node"), map_size=MAP_SIZE, node_id=n)
                     for n in ("node-a", "node-b")]
        try:
            run_history(nodes, ops)
        finally:
            for node in nodes:
                node.close()

    return test


def run_history(nodes, ops):
    now = T0
    for (kind, who, name, value, ttl), step_ms in ops:
        now += step_ms / 1000
        node = nodes[who]
        if kind == "put":
            node.put(name, value, expiry=now + ttl, now=now)
        elif kind == "delete":
            node.delete(name, value, now=now)
        else:
            replicate(node, nodes[1 - who], now)
    # A final round each way, each past the horizon of every earlier write (the merge
    # re-logs what it changes, so the second pass must see the first pass's writes).
    settle = 2 * changelog.STABLE_HORIZON_MS / 1000
    replicate(nodes[0], nodes[1], now + settle)
    end = now + 2 * settle
    replicate(nodes[1], nodes[0], end)
    assert state_of(nodes[0], end) == state_of(nodes[1], end)
    for name in NAMES:
        assert (sorted(nodes[0].get(name, end), key=str)
                == sorted(nodes[1].get(name, end), key=str))


test_two_memory_nodes_converge_whatever_the_order_of_events = converge_test("memory")
test_two_lmdb_nodes_converge_whatever_the_order_of_events = converge_test("lmdb")


# the pure parts: cursor text and the ordering rule

@pytest.mark.parametrize("text, cursor", [
    ("0::", Cursor(0, "", "")),
    ("1700000000000:a.mesh.test:" + "ab" * 32, Cursor(1700000000000, "a.mesh.test", "ab" * 32)),
    ("5:a.mesh.test", Cursor(5, "a.mesh.test", "")),
])
def test_cursor_text_round_trips(text, cursor):
    assert changelog.parse_cursor(text) == cursor
    assert changelog.parse_cursor(changelog.format_cursor(cursor)) == cursor


@pytest.mark.parametrize("text", ["", "x", "-1:a:", "1:a:XYZ", "1:a:" + "AB" * 32, "1:a:b:c",
                                  "99999999999999999999:a:", "1:" + "a" * 254 + ":",
                                  "1:a\nb:", None, 5])
def test_malformed_cursor_text_is_none(text):
    assert changelog.parse_cursor(text) is None


@given(st.lists(st.tuples(st.integers(0, 10), st.integers(-5, 5)), max_size=50))
def test_next_ts_is_strictly_increasing_and_never_far_ahead_of_the_clock(steps):
    last, clock, highest_clock, commits = 0, 1000, 1000, 0
    for burst, jump in steps:
        clock = max(0, clock + jump)                 # the wall clock may step back
        highest_clock = max(highest_clock, clock)
        for _ in range(burst):
            ts = changelog.next_ts(last, clock)
            commits += 1
            assert ts > last and ts >= clock
            assert ts <= highest_clock + commits
            last = ts


# --- which names each generation touched (for the DNS answer caches) --------------------------

def test_touched_between_names_what_each_generation_changed(store):
    start = store.generation()
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    store.put_many([("b.mesh.test", "v", T0 + 5), ("c.b.mesh.test", "v", T0 + 100)],
                   now=T0)
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)     # no change, no generation
    store.delete("a.mesh.test", now=T0 + 1)
    store.sweep(T0 + 10, 100)
    end = store.generation()
    assert end == start + 4
    assert store.touched_between(start, start + 1) == {b"test.mesh.a"}
    assert store.touched_between(start + 1, start + 2) == {b"test.mesh.b", b"test.mesh.b.c"}
    assert store.touched_between(start + 3, end) == {b"test.mesh.b"}       # the sweep
    assert store.touched_between(start, end) == {b"test.mesh.a", b"test.mesh.b",
                                                 b"test.mesh.b.c"}
    assert store.touched_between(end, end) == set()
    assert store.touched_between(end, end + 1) is None          # not written yet
    assert store.touched_between(end, start) is None            # backwards


def test_touched_between_is_unknown_past_the_ring_or_for_huge_writes(store):
    from dmfdns.store.touched import MAX_NAMES, RING
    start = store.generation()
    store.put_many([(f"n{i}.mesh.test", "v", T0 + 100) for i in range(MAX_NAMES + 1)],
                   now=T0)
    assert store.touched_between(start, start + 1) is None
    for i in range(RING):
        store.put("x.mesh.test", f"v{i}", expiry=T0 + 100, now=T0)
    end = store.generation()
    assert store.touched_between(end - RING, end) == {b"test.mesh.x"}
    assert store.touched_between(start, end) is None            # the ring lapped it
