"""The store's DNS hot-path reads, over MemoryStore and LmdbStore: the by-key forms the lean
path uses (``packed_txt_at``, ``descendants_live_until``) agree with the by-name reads, the
validity bound ``descendants_live_until`` gives really holds, and ``generation()`` is an
in-process counter that equals what the store persisted."""

import itertools
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto.names import reversed_key
from dmfdns.store.api import StoreError, StoreFull
from dmfdns.store.engine import ENT_PROBE, FOREVER_MS
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.memory_store import MemoryStore

T0 = 1_700_000_000.0
T0_MS = 1_700_000_000_000
MAP_SIZE = 64 * 1024 * 1024


@pytest.fixture(params=["memory", "lmdb"])
def new_store(request, tmp_path_factory):
    made, counter = [], itertools.count()

    def make():
        if request.param == "memory":
            store = MemoryStore(node_id="n1")
        else:
            path = tmp_path_factory.mktemp("db") / f"db{next(counter)}"
            store = LmdbStore(path, map_size=MAP_SIZE, node_id="n1")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(new_store):
    return new_store()


def test_packed_txt_at_is_packed_txt_by_reversed_key(store):
    store.put("slot-1.mb-aa.mesh.test", "one", expiry=T0 + 60, now=T0)
    store.put("slot-1.mb-aa.mesh.test", "two", expiry=T0 + 30, now=T0)
    for name in ("slot-1.mb-aa.mesh.test", "mb-aa.mesh.test", "nope.mesh.test"):
        assert store.packed_txt_at(reversed_key(name)) == store.packed_txt(name)
    assert store.packed_txt_at(b"test.mesh.mb-aa.slot-1") is not None
    assert store.packed_txt_at(b"test.mesh.mb-aa") is None


def test_descendants_live_until_bounds_by_the_first_live_name(store):
    store.put("a.x.mesh.test", "short", expiry=T0 + 10, now=T0)
    store.put("a.x.mesh.test", "long", expiry=T0 + 50, now=T0)
    store.put("b.x.mesh.test", "later", expiry=T0 + 90, now=T0)
    key = reversed_key("x.mesh.test")
    # The first name below in key order is a.x: live until its last value expires.
    assert store.descendants_live_until(key, T0_MS) == T0_MS + 50_000 - 1
    # Once a.x has expired, b.x answers.
    assert store.descendants_live_until(key, T0_MS + 50_000) == T0_MS + 90_000 - 1
    assert store.descendants_live_until(key, T0_MS + 90_000) is None
    assert store.descendants_live_until(reversed_key("a.x.mesh.test"), T0_MS) is None
    # A sibling whose key shares a prefix is not below.
    assert store.descendants_live_until(reversed_key("a.mesh.test"), T0_MS) is None


def test_descendants_past_the_probe_limit_count_until_a_write(store):
    for i in range(ENT_PROBE):
        store.put(f"n{i}.x.mesh.test", "v", expiry=T0 + 1, now=T0)
    key = reversed_key("x.mesh.test")
    assert store.descendants_live_until(key, T0_MS + 5000) == FOREVER_MS
    assert store.has_descendants("x.mesh.test", T0 + 5)
    store.sweep(T0 + 5, 100)
    assert store.descendants_live_until(key, T0_MS + 5000) is None


names = st.lists(st.tuples(st.sampled_from(["a", "b", "c.a", "d.b", "e", "a.e", "f.c.a"]),
                           st.integers(-5, 60)), max_size=12)


@settings(max_examples=60)
@given(content=names, at=st.integers(0, 70),
       parent=st.sampled_from(["mesh.test", "a.mesh.test", "b.mesh.test", "c.a.mesh.test",
                               "e.mesh.test"]))
def test_descendants_live_until_agrees_with_has_descendants_and_holds(tmp_path_factory,
                                                                       content, parent, at):
    # Both stores in one example (pytest-twisted cannot share a parametrised fixture with
    # hypothesis).
    lmdb = LmdbStore(tmp_path_factory.mktemp("db"), map_size=MAP_SIZE, node_id="n1")
    try:
        for store in (MemoryStore(node_id="n1"), lmdb):
            check_descendants_bound(store, content, parent, at)
    finally:
        lmdb.close()


def check_descendants_bound(store, content, parent, at):
    for label, lifetime in content:
        store.put(f"{label}.mesh.test", f"v{lifetime}", expiry=T0 + lifetime,
                  now=T0 - 10)
    now_ms = T0_MS + at * 1000
    until = store.descendants_live_until(reversed_key(parent), now_ms)
    assert (until is not None) == store.has_descendants(parent, now_ms / 1000)
    for later_ms in (now_ms + step for step in (0, 1, 999, 1000, 7_000, 70_000)):
        if until is None:
            assert not store.has_descendants(parent, later_ms / 1000), later_ms
        elif later_ms <= until:
            assert store.has_descendants(parent, later_ms / 1000), later_ms


def test_generation_counts_every_commit_and_matches_what_is_stored(tmp_path):
    path = tmp_path / "db"
    store = LmdbStore(path, map_size=MAP_SIZE, node_id="n1")
    seen = [store.generation()]
    store.put("a.mesh.test", "v", expiry=T0 + 10, now=T0)
    seen.append(store.generation())
    store.put("a.mesh.test", "v", expiry=T0 + 10, now=T0)       # no change
    seen.append(store.generation())
    store.delete("a.mesh.test", now=T0 + 1)
    seen.append(store.generation())
    store.sweep(T0 + 20, 10)
    seen.append(store.generation())
    store.meta_set("k", b"v")                                   # not DNS content
    seen.append(store.generation())
    assert seen == [0, 1, 1, 2, 3, 3]
    store.close()
    reopened = LmdbStore(path, map_size=MAP_SIZE, node_id="n1")
    try:
        assert reopened.generation() == 3
    finally:
        reopened.close()


def test_a_writer_reads_its_generation_without_a_transaction(tmp_path, monkeypatch):
    store = LmdbStore(tmp_path / "db", map_size=MAP_SIZE, node_id="n1")
    try:
        store.put("a.mesh.test", "v", expiry=T0 + 10, now=T0)

        def no_reads(write=False):
            raise AssertionError("generation() opened a transaction")
        monkeypatch.setattr(store, "_begin", no_reads)
        assert store.generation() == 1
    finally:
        monkeypatch.undo()
        store.close()


def test_a_failed_write_leaves_the_generation_as_committed(tmp_path):
    store = LmdbStore(tmp_path / "db", map_size=256 * 1024, node_id="n1")
    try:
        store.put("a.mesh.test", "v", expiry=T0 + 60, now=T0)
        with pytest.raises(StoreFull):
            store.put_many([(f"n{i}.mesh.test", "x" * 1000, T0 + 60) for i in range(400)],
                           now=T0)
        assert store.generation() == 1
        with pytest.raises(StoreError):
            store.put("bad name!", "v", expiry=T0 + 60, now=T0)
        assert store.generation() == 1
        store.put("b.mesh.test", "v", expiry=T0 + 60, now=T0)
        assert store.generation() == 2
    finally:
        store.close()


WRITER = textwrap.dedent("""
    import sys
    from dmfdns.store.lmdb_store import LmdbStore
    store = LmdbStore(sys.argv[1], map_size=64 * 1024 * 1024, node_id="other")
    store.put("w.mesh.test", "v", expiry=1_700_000_060.0, now=1_700_000_000.0)
    store.close()
""")


def test_a_read_only_handle_sees_another_process_commit(tmp_path):
    path = tmp_path / "db"
    LmdbStore(path, map_size=MAP_SIZE, node_id="n1").close()
    reader = LmdbStore(path, readonly=True)
    try:
        assert reader.generation() == 0
        subprocess.run([sys.executable, "-c", WRITER, str(path)], check=True, timeout=60)
        assert reader.generation() == 1
    finally:
        reader.close()
