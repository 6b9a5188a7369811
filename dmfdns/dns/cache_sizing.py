"""The answer cache's bounds when ``[dns] answer_cache_entries`` or ``answer_cache_bytes``
is ``"auto"`` (the default): sized to the zone, so that a node asked for every name it
holds answers the second question for a name from the cache.

A fixed bound fits one zone size only. At a million names a 64 MiB cache holds about
92,000 answers: a resolver population asking across the whole store misses nine times in
ten, and every miss reads LMDB and builds the answer again (the million-record benchmark
served 0.64 of its 50k rate then; sized to the zone, 0.91). At a thousand names the same
bound is memory the node never uses, which ``auto`` does not take either: the bounds follow
the names stored, checked every ``RESIZE_INTERVAL`` seconds.

* entries: ``ENTRIES_PER_NAME`` per stored name (room for a name asked with and without
  DO, in two spellings, and for the negative answers under the zone), at least
  ``MIN_ENTRIES``;
* bytes: ``BYTES_PER_NAME`` per stored name (an answer of the benchmark costs about 810
  bytes with its key and overhead), at least ``MIN_BYTES``, and at most a
  ``MEMORY_SHARE``-th of the memory the node may use (its cgroup's ``memory.max``, else
  the machine's) divided among the DNS processes, each of which keeps its own cache.

An explicit number for either setting is used as given.
"""

import math
import os
import pathlib

from ..config_values import AUTO

ENTRIES_PER_NAME = 1.25
BYTES_PER_NAME = 1024
MIN_ENTRIES = 100_000
MIN_BYTES = 64 * 2**20
MEMORY_SHARE = 4
RESIZE_INTERVAL = 60.0

CGROUP_LIMITS = (pathlib.Path("/sys/fs/cgroup/memory.max"),                      # v2
                 pathlib.Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))    # v1


def memory_limit(cgroup_files=CGROUP_LIMITS) -> int:
    """Bytes of memory this process may use: the first cgroup limit found that is below
    the machine's memory, else the machine's."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in cgroup_files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:
            return int(text)
    return physical


def cache_bounds(entries_setting, bytes_setting, names: int, memory: int,
                 processes: int) -> tuple[int, int]:
    """``(entries, bytes)`` for the settings as configured (an int, or ``AUTO``) with
    ``names`` stored, ``memory`` bytes available and ``processes`` DNS processes."""
    entries, size = entries_setting, bytes_setting
    if entries == AUTO:
        entries = max(MIN_ENTRIES, math.ceil(names * ENTRIES_PER_NAME))
    if size == AUTO:
        ceiling = memory // (MEMORY_SHARE * max(1, processes))
        size = min(max(MIN_BYTES, names * BYTES_PER_NAME), max(1, ceiling))
    return entries, size


def is_auto(entries_setting, bytes_setting) -> bool:
    """Whether either bound follows the zone."""
    return AUTO in (entries_setting, bytes_setting)
