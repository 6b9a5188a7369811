"""LmdbStore only: durability across kill -9, map full, reopen, read-only handles in other
processes, and the speed of bulk import and of the DNS hot-path reads (docs/decisions.md §3,
docs/decisions.md §3.4). Real LMDB environments under tmp_path; child processes are bounded.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dmfdns.dns import rrblob
from dmfdns.store import changelog
from dmfdns.store.api import Cursor, StoreError, StoreFull, Value
from dmfdns.store.lmdb_store import LmdbStore

T0 = 1_700_000_000.0
MAP_SIZE = 64 * 1024 * 1024
pytestmark = pytest.mark.integration


def child(code: str, *args, **popen) -> subprocess.Popen:
    """A Python child process running ``code`` with ``args`` in sys.argv[1:]."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            text=True, **popen)


WRITER = """
    import sys
    from dmfdns.store.lmdb_store import LmdbStore
    store = LmdbStore(sys.argv[1], map_size=64 * 1024 * 1024, node_id="child")
    for i in range(100_000):
        store.put(f"n{i}.mesh.test", f"value-{i}", expiry=float(sys.argv[2]), now=float(sys.argv[3]))
        print(i, flush=True)
"""


def test_every_acknowledged_put_survives_kill_9(tmp_path):
    path = tmp_path / "db"
    writer = child(WRITER, path, T0 + 3600, T0, stdout=subprocess.PIPE)
    acknowledged = []
    deadline = time.monotonic() + 60
    try:
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            acknowledged.append(int(writer.stdout.readline()))
    finally:
        os.kill(writer.pid, signal.SIGKILL)
    acknowledged += [int(line) for line in writer.stdout.read().split()]
    writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 150

    store = LmdbStore(path, map_size=MAP_SIZE, node_id="parent")
    try:
        for i in acknowledged:
            assert store.get(f"n{i}.mesh.test", T0) == [Value(f"value-{i}", T0 + 3600)], i
        # The dead writer's lock is released: this process can write at once.
        assert store.put("after.mesh.test", "v", expiry=T0 + 60, now=T0)
        assert store.stats().values >= len(acknowledged) + 1
    finally:
        store.close()


def fill_until_full(store, prefix: str, expiry: float, now: float) -> int:
    for written in range(100_000):
        try:
            store.put(f"{prefix}{written}.mesh.test", "x" * 1000, expiry=expiry, now=now)
        except StoreFull:
            return written
    raise AssertionError("the map never filled")


def sweep_all(store, now: float) -> int:
    removed = batch = 1000
    total = 0
    while removed == batch:
        removed = store.sweep(now, batch)
        total += removed
    return total


def test_a_full_map_drains_itself_through_deletes_and_sweeps_cycle_after_cycle(tmp_path):
    """Writes stop short of the map; deletes and sweeps use the reserve, so a full store
    never needs a bigger map_size to recover: three fill / expire / sweep cycles, one of
    them across a restart."""
    path, map_size = tmp_path / "db", 4 * 2**20
    store = LmdbStore(path, map_size=map_size, node_id="n1")
    assert store.reserve == 2**20
    try:
        now = T0
        for cycle in range(3):
            written = fill_until_full(store, f"c{cycle}-", now + 60, now)
            assert written > 500
            assert store.delete(f"c{cycle}-0.mesh.test", now=now) == 1   # DELETE works
            with pytest.raises(StoreFull):
                store.put("one-more.mesh.test", "x" * 1000, expiry=now + 60, now=now)
            if cycle == 1:                      # a restart does not lose the way out
                store.close()
                store = LmdbStore(path, map_size=map_size, node_id="n1")
            now += 120                          # every value expired
            assert sweep_all(store, now) >= written - 1
            assert store.stats().values == 0
            assert store.put("after.mesh.test", "v", expiry=now + 60, now=now)
            assert store.stats().map_size_bytes == map_size
    finally:
        store.close()


def test_a_full_map_refuses_writes_with_a_clear_error_and_reads_go_on(tmp_path):
    store = LmdbStore(tmp_path / "db", map_size=256 * 1024, node_id="n1")
    try:
        written = 0
        with pytest.raises(StoreFull) as full:
            for written in range(10_000):
                store.put(f"n{written}.mesh.test", "x" * 1000, expiry=T0 + 60, now=T0)
        assert "full" in str(full.value) and "map_size" in str(full.value)
        assert written > 10
        generation = store.generation()
        assert store.get("n0.mesh.test", T0) == [Value("x" * 1000, T0 + 60)]
        assert store.packed_txt("n1.mesh.test") is not None
        assert store.has_descendants("mesh.test", T0)
        assert store.stats().values == written
        with pytest.raises(StoreFull):
            store.put_many([(f"bulk{i}.mesh.test", "y" * 1000, T0 + 60) for i in range(50)],
                           now=T0)
        with pytest.raises(StoreFull):
            store.meta_set("big", b"z" * 200_000)
        assert store.get("bulk0.mesh.test", T0) == []
        assert store.generation() == generation
    finally:
        store.close()
    # The operator's fix: reopen with a larger map; everything is there and writes work.
    bigger = LmdbStore(tmp_path / "db", map_size=MAP_SIZE, node_id="n1")
    try:
        assert bigger.stats().map_size_bytes == MAP_SIZE
        assert bigger.put("more.mesh.test", "v", expiry=T0 + 60, now=T0)
        assert bigger.get("n0.mesh.test", T0) == [Value("x" * 1000, T0 + 60)]
    finally:
        bigger.close()


def test_everything_persists_across_reopen_and_the_log_never_goes_back(tmp_path):
    path = tmp_path / "db"
    store = LmdbStore(path, map_size=MAP_SIZE, node_id="n1")
    store.put("a.mesh.test", "v", expiry=T0 + 600, now=T0 + 100)
    store.delete("a.mesh.test", "v", now=T0 + 101)
    store.put("b.mesh.test", "w", expiry=T0 + 600, now=T0 + 102)
    store.meta_set("sync:cursor:peer", b"1:b.mesh.test:")
    generation = store.generation()
    store.close()

    store = LmdbStore(path, map_size=MAP_SIZE, node_id="n1")
    try:
        assert store.generation() == generation
        assert store.meta_get("sync:cursor:peer") == b"1:b.mesh.test:"
        assert store.get("b.mesh.test", T0 + 103) == [Value("w", T0 + 600)]
        assert store.get("a.mesh.test", T0 + 103) == []
        store.put("c.mesh.test", "x", expiry=T0 + 600, now=T0)        # the clock went back
        changes = store.changes_after(Cursor(), 10, now=T0 + 200).changes
        assert [(c.name, c.deleted) for c in changes] == [
            ("a.mesh.test", True), ("b.mesh.test", False), ("c.mesh.test", False)]
        assert changes[-1].ts_ms == changes[-2].ts_ms + 1
        assert store.generation() == generation + 1
    finally:
        store.close()


READER = """
    import json, sys
    from dmfdns.store.api import StoreError
    from dmfdns.store.lmdb_store import LmdbStore
    store = LmdbStore(sys.argv[1], readonly=True)
    now = float(sys.argv[2])
    for line in sys.stdin:
        command, _, name = line.strip().partition(" ")
        if command == "get":
            answer = [v.value for v in store.get(name, now)]
        elif command == "packed":
            blob = store.packed_txt(name)
            answer = None if blob is None else blob.hex()
        elif command == "ent":
            answer = store.has_descendants(name, now)
        elif command == "generation":
            answer = store.generation()
        else:
            try:
                store.put(name, "v", expiry=now + 60, now=now)
                answer = "written"
            except StoreError as error:
                answer = "refused: " + str(error)
        print(json.dumps(answer), flush=True)
"""


def ask(reader: subprocess.Popen, command: str):
    reader.stdin.write(command + "\n")
    reader.stdin.flush()
    return json.loads(reader.stdout.readline())


def test_a_read_only_handle_in_another_process_sees_committed_writes(tmp_path):
    path = tmp_path / "db"
    store = LmdbStore(path, map_size=1024 * 1024, node_id="writer")
    store.put("first.mesh.test", "one", expiry=T0 + 600, now=T0)
    reader = child(READER, path, T0, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert ask(reader, "get first.mesh.test") == ["one"]
        store.put("slot-1.mb-a.mesh.test", "two", expiry=T0 + 600, now=T0)
        assert ask(reader, "get slot-1.mb-a.mesh.test") == ["two"]
        assert bytes.fromhex(ask(reader, "packed slot-1.mb-a.mesh.test")) == store.packed_txt(
            "slot-1.mb-a.mesh.test")
        assert ask(reader, "ent mb-a.mesh.test") is True
        assert ask(reader, "generation") == store.generation()
        assert ask(reader, "put x.mesh.test").startswith("refused: store is open read-only")

        # The writer grows the map past the reader's mapping; the reader adopts the new size.
        store.close()
        store = LmdbStore(path, map_size=32 * 1024 * 1024, node_id="writer")
        store.put_many([(f"big{i}.mesh.test", "b" * 2000, T0 + 600) for i in range(2000)],
                       now=T0 + 1)
        assert store.stats().map_used_bytes > 1024 * 1024
        assert ask(reader, "get big1999.mesh.test") == ["b" * 2000]
    finally:
        reader.stdin.close()
        reader.wait(timeout=10)
        store.close()
    assert reader.returncode == 0


def test_opening_needs_a_map_size_for_writing_and_a_store_for_reading(tmp_path):
    with pytest.raises(StoreError, match="map_size"):
        LmdbStore(tmp_path / "db")
    with pytest.raises(StoreError):
        LmdbStore(tmp_path / "missing", readonly=True)


def test_a_store_of_another_schema_is_refused(tmp_path):
    import lmdb   # only to forge a foreign schema marker, as an old or newer dmfdns would
    store = LmdbStore(tmp_path / "db", map_size=MAP_SIZE)
    store.close()
    env = lmdb.open(str(tmp_path / "db"), max_dbs=8)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.put(b"store:schema", b"99")
    env.close()
    with pytest.raises(StoreError, match="schema"):
        LmdbStore(tmp_path / "db", map_size=MAP_SIZE)


def test_stats_report_map_use(tmp_path):
    store = LmdbStore(tmp_path / "db", map_size=MAP_SIZE)
    try:
        before = store.stats().map_used_bytes
        store.put_many([(f"n{i}.mesh.test", "v" * 500, T0 + 60) for i in range(500)], now=T0)
        stats = store.stats()
        assert stats.map_size_bytes == MAP_SIZE
        assert before < stats.map_used_bytes < MAP_SIZE
        assert (stats.names, stats.values) == (500, 500)
        assert store.reap_stale_readers() == 0
    finally:
        store.close()


def per_call_us(function, args_list) -> float:
    start = time.perf_counter()
    for args in args_list:
        function(*args)
    return (time.perf_counter() - start) / len(args_list) * 1e6


@pytest.mark.slow
@pytest.mark.ci
def test_bulk_import_and_hot_path_reads_are_fast(tmp_path):
    """50,000 mailbox-slot names: import in one put_many, then time the DNS reads."""
    store = LmdbStore(tmp_path / "db", map_size=1024 * 1024 * 1024)
    try:
        items = [(f"slot-{i % 10}.mb-{i // 10:06x}.mesh.test", "v=dmp1;t=chunk;" + "a" * 200,
                  T0 + 3600) for i in range(50_000)]
        start = time.perf_counter()
        assert store.put_many(items, now=T0) == 50_000
        import_seconds = time.perf_counter() - start

        names = [(name,) for name, _, _ in items]
        packed_us = per_call_us(store.packed_txt, names)
        parents = [(f"mb-{i:06x}.mesh.test", T0) for i in range(5_000)] * 10
        ent_us = per_call_us(store.has_descendants, parents)
        leaves = [(name, T0) for name, in names]
        leaf_us = per_call_us(store.has_descendants, leaves)
        assert rrblob.live(store.packed_txt(names[0][0]), T0 * 1000)
        assert all(store.has_descendants(*args) for args in parents[:100])
        assert not any(store.has_descendants(*args) for args in leaves[:100])

        first = store.changes_after(Cursor(), changelog.MAX_PAGE, now=T0 + 2)
        assert len(first.changes) == changelog.MAX_PAGE and first.has_more
    finally:
        store.close()
    rate = 50_000 / import_seconds
    print(f"\nbulk import: {rate:,.0f} records/s ({import_seconds:.2f} s for 50,000); "
          f"packed_txt {packed_us:.1f} us/call; has_descendants {ent_us:.1f} us (ENT), "
          f"{leaf_us:.1f} us (leaf)")
    assert import_seconds < 30
    assert packed_us < 100 and ent_us < 100 and leaf_us < 100
