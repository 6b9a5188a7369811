"""The full-set index (sync/fullset.py) keeps nothing per entry that Python's cyclic garbage
collector walks: at a million entries, per-entry pointers made every full collection cost
about 40 ms of CPU (5-12 ms without them), a reactor stall on every node holding the index."""

import gc
import types

from dmfdns.store.memory_store import MemoryStore
from dmfdns.sync import fullset
from dmfdns.sync.fullset import FullSetIndex

T0 = 1_700_000_000.0


def walked_pointers(roots) -> int:
    """References the collector follows from the tracked containers reachable from
    ``roots`` (what a full collection walks on their account); classes and modules, which
    every object leads to, are not the index's."""
    seen, todo, walked = set(), list(roots), 0
    while todo:
        obj = todo.pop()
        if (id(obj) in seen or not gc.is_tracked(obj)
                or isinstance(obj, (type, types.ModuleType))):
            continue
        seen.add(id(obj))
        referents = gc.get_referents(obj)
        walked += len(referents)
        todo.extend(referents)
    return walked


def built_index(entries: int, seconds: int) -> FullSetIndex:
    store = MemoryStore(horizon_ms=0)
    for i in range(entries):
        store.put(f"n{i}.mesh.test", f"v{i}", expiry=T0 + 3600 + i % seconds, now=T0)
    index = FullSetIndex(store, slice_seconds=0.001)
    while not index.refresh(T0 + 100):       # every write stamped by now
        pass
    assert index.count == entries
    return index


def test_a_built_index_leaves_the_collector_nothing_per_entry():
    index = built_index(6000, seconds=40)
    gc.collect()
    state = [value for name, value in vars(index).items() if name not in ("_store", "_timer")]
    assert walked_pointers(state) < 1000          # buckets, hashes, one heap item a second


def refreshed(index: FullSetIndex, now: float) -> FullSetIndex:
    """Slices until the index covers the log and has dropped what expired."""
    while not (index.refresh(now) and index.expired):
        pass
    return index


def test_entries_expire_from_the_tuples_slice_by_slice():
    index = built_index(3000, seconds=30)
    root = index.root()
    # Entries leave within EDGE_MS (10 s) of their expiry: seconds 0..15 of the 30 here.
    assert refreshed(index, T0 + 3600 - 10 + 15).count == 3000 - 16 * 100
    assert index.root() != root
    assert refreshed(index, T0 + 3600 + 30).count == 0
    assert index.root() == f"{0:032x}"


class StepTimer:
    """A slice timer that moves ``step`` seconds on every read: a slice ends after a known
    number of checks, whatever the machine's speed."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def one_second_index(entries: int, timer) -> FullSetIndex:
    """An index of ``entries`` expiring in one second (an import: one transaction)."""
    store = MemoryStore(horizon_ms=0)
    store.put_many([(f"n{i}.mesh.test", f"v{i}", T0 + 3600.5) for i in range(entries)], now=T0)
    return FullSetIndex(store, timer=timer, slice_seconds=1.0)


def test_keys_of_one_second_are_filed_in_chunks_that_are_never_copied():
    index = one_second_index(9000, StepTimer(0.2))    # a few pages per slice
    filed = []
    while not index.refresh(T0 + 100):
        filed.append(index._expiring[int(T0) + 3600])
    filed.append(index._expiring[int(T0) + 3600])
    assert len(filed) > 2
    for before, after in zip(filed, filed[1:]):
        # A slice adds chunks (or tops up the last one); the ones filed before the last
        # are the same objects, never copied.
        assert all(a is b for a, b in zip(before[:-1], after)) and len(after) >= len(before)
    assert sum(map(len, filed[-1])) == 9000
    assert max(map(len, filed[-1])) <= fullset.CHUNK


def test_keys_spread_over_many_seconds_top_up_one_chunk_per_second():
    index = built_index(6000, seconds=40)         # every slice adds a few keys to each
    chunks = list(index._expiring.values())
    assert len(chunks) == 40 and all(len(held) == 1 and len(held[0]) == 150
                                     for held in chunks)


def test_a_large_second_expires_over_several_slices_not_in_one():
    timer = StepTimer(0.0)
    index = one_second_index(9000, timer)
    while not index.refresh(T0 + 100):
        pass
    timer.step = 0.6                     # a slice's budget (1 s) runs out after one chunk
    counts = []
    while index.count:
        index.refresh(T0 + 3600 + 1)
        counts.append(index.count)
        assert index.expired is (index.count == 0) and len(counts) < 100
    # One or two chunks of at most CHUNK keys per slice, every key gone in the end.
    assert len(counts) >= 9000 // (2 * fullset.CHUNK)
    assert all(a - b <= 2 * fullset.CHUNK for a, b in zip([9000] + counts, counts))
    assert index.root() == f"{0:032x}" and int(T0) + 3600 not in index._expiring
