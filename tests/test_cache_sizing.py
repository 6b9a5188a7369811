"""The answer cache sized to the zone (``[dns] answer_cache_* = "auto"``): the bounds for a
number of stored names and the memory at hand, the memory read from a cgroup, the
settings as read from a configuration file, and the sizer that resizes a running
responder's cache as the store grows and shrinks."""

import pytest

from dmfdns import config as cfg
from dmfdns.config import ConfigError, parse_config
from dmfdns.config_values import AUTO
from dmfdns.dns.cache_sizing import (MIN_BYTES, MIN_ENTRIES, cache_bounds, is_auto,
                                     memory_limit)
from dmfdns.dns.responder import Responder
from dmfdns.node_dns import CacheSizer, cache_sizer, responder_settings
from dmfdns.store.api import StoreStats
from dmfdns.store.memory_store import MemoryStore

GIB = 2**30


def parse(text, tmp_path):
    return parse_config(text, base=tmp_path, cwd=tmp_path)


@pytest.mark.parametrize("names, memory, processes, expected", [
    (0, 24 * GIB, 1, (MIN_ENTRIES, MIN_BYTES)),                 # the floors
    (50_000, 24 * GIB, 1, (MIN_ENTRIES, MIN_BYTES)),
    (1_000_000, 24 * GIB, 1, (1_250_000, 1_024_000_000)),       # 1.25 and 1 KiB per name
    (1_000_000, 2 * GIB, 2, (1_250_000, 256 * 2**20)),          # a quarter over 2 processes
    (1_000_000, 128 * 2**20, 1, (1_250_000, 32 * 2**20)),       # the cap beats the floor
])
def test_auto_bounds_follow_the_names_within_a_share_of_the_memory(names, memory,
                                                                    processes, expected):
    assert cache_bounds(AUTO, AUTO, names, memory, processes) == expected


def test_a_number_is_used_as_given():
    assert cache_bounds(500, AUTO, 10**6, 24 * GIB, 1) == (500, 1_024_000_000)
    assert cache_bounds(AUTO, 2**20, 10**6, 24 * GIB, 1) == (1_250_000, 2**20)
    assert cache_bounds(0, 0, 10**6, 24 * GIB, 1) == (0, 0)
    assert is_auto(AUTO, 0) and is_auto(0, AUTO) and not is_auto(0, 5)


def test_the_memory_is_the_cgroups_limit_when_one_is_set(tmp_path):
    physical = memory_limit(())
    assert physical > 0
    limited, unlimited, huge = (tmp_path / n for n in ("limited", "unlimited", "huge"))
    limited.write_text("1073741824\n")
    unlimited.write_text("max\n")
    huge.write_text("9223372036854771712\n")        # cgroup v1's "no limit"
    assert memory_limit((tmp_path / "missing", limited)) == min(GIB, physical)
    assert memory_limit((unlimited,)) == physical
    assert memory_limit((huge,)) == physical


def test_the_settings_are_auto_by_default_and_read_numbers_or_auto(tmp_path):
    dns = parse("", tmp_path).dns
    assert (dns.answer_cache_entries, dns.answer_cache_bytes) == (AUTO, AUTO)
    dns = parse('[dns]\nanswer_cache_entries = 5000\nanswer_cache_bytes = "8MiB"\n',
                tmp_path).dns
    assert (dns.answer_cache_entries, dns.answer_cache_bytes) == (5000, 8 * 2**20)
    dns = parse('[dns]\nanswer_cache_entries = "auto"\nanswer_cache_bytes = 0\n',
                tmp_path).dns
    assert (dns.answer_cache_entries, dns.answer_cache_bytes) == (AUTO, 0)
    with pytest.raises(ConfigError, match=r'\[dns\] answer_cache_bytes: .*\(or "auto"\)'):
        parse('[dns]\nanswer_cache_bytes = "automatic"\n', tmp_path)
    kinds = {key: kind for key, kind, _, _ in cfg.describe(cfg.DnsConfig)}
    assert kinds["answer_cache_entries"].startswith('"auto" or integer')


class GrowingStore(MemoryStore):
    """A store whose name count the test sets, as the sizer reads it through ``stats``."""

    names = 0

    def stats(self) -> StoreStats:
        return StoreStats(names=self.names, values=0, map_used_bytes=0, map_size_bytes=0,
                          tombstones=0)


def test_the_sizer_follows_the_store_up_and_down(tmp_path):
    config = parse("", tmp_path)
    store = GrowingStore()
    responder = Responder([], store, responder_settings(config, None, memory=24 * GIB))
    sizer = CacheSizer(config, responder, store, memory=24 * GIB)
    cache = responder.cache
    assert (cache.max_entries, cache.max_bytes) == (MIN_ENTRIES, MIN_BYTES)
    store.names = 400_000
    sizer.tick()
    assert responder.cache is cache          # resized in place: the answers stay
    assert (cache.max_entries, cache.max_bytes) == (500_000, 409_600_000)
    assert (responder.settings.cache_entries, responder.settings.cache_bytes) == (
        500_000, 409_600_000)
    assert responder.counters.cache_max_bytes == 409_600_000
    store.names = 10
    sizer.tick()
    assert (cache.max_entries, cache.max_bytes) == (MIN_ENTRIES, MIN_BYTES)


def test_fixed_bounds_need_no_sizer(tmp_path):
    config = parse('[dns]\nanswer_cache_entries = 500\nanswer_cache_bytes = "1MiB"\n',
                   tmp_path)
    responder = Responder([], MemoryStore(), responder_settings(config, None))
    assert cache_sizer(config, responder, MemoryStore()) is None
    off = parse("[dns]\nanswer_cache_entries = 0\n", tmp_path)
    responder = Responder([], MemoryStore(), responder_settings(off, None))
    assert responder.cache is None
    responder.resize_cache(1000, 2**20)      # a sizer of a cache that is off changes nothing
    assert responder.cache is None
