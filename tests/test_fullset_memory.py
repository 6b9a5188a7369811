"""The full-set index (sync/fullset.py) keeps nothing per entry that Python's cyclic garbage
collector walks: at a million entries, per-entry pointers made every full collection cost
about 40 ms of CPU (5-12 ms without them), a reactor stall on every node holding the index."""

import gc
import types

from dmfdns.store.memory_store import MemoryStore
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


def test_entries_expire_from_the_tuples_slice_by_slice():
    index = built_index(3000, seconds=30)
    root = index.root()
    # Entries leave within EDGE_MS (10 s) of their expiry: seconds 0..15 of the 30 here.
    assert index.refresh(T0 + 3600 - 10 + 15) and index.count == 3000 - 16 * 100
    assert index.root() != root
    assert index.refresh(T0 + 3600 + 30) and index.count == 0
    assert index.root() == f"{0:032x}"
