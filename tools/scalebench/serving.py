"""A big node's DNS against a small one's, fairly: the same query shapes, alternating rounds
on the same box (so its noise falls on both), each round with the node's answer-cache hit
rate, CPU and major page faults; and what a serving node holds in memory.

Query shapes (every name asked exists on the node asked):

* ``shared``: names drawn uniformly from the small node's names, asked of both: the same
  working set, so a difference is the store's size alone;
* ``own``: each node asked names drawn uniformly from its own names, fresh draws each run:
  a million-name node then keeps one name in ten in its answer cache where the small node
  keeps all (the worst case for a cache);
* ``zipf``: each node asked its own names with Zipf-like popularity (s = 1: the name ranked
  r is asked in proportion to 1/r, ranks a fixed random order of the node's names), fresh
  draws each run: real resolver traffic is skewed, so a cache of a tenth of the names
  answers most queries.
"""

import itertools
import os
import shutil
import subprocess

from . import dns

SHAPES = ("shared", "own", "zipf")


def median(values: list) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def zipf_draws(rng, order: list, count: int) -> list:
    """``count`` names of ``order`` (the node's names, most popular first) drawn with Zipf
    popularity, s = 1: the name at rank r (from 1) with probability (1/r) / H(len(order))."""
    weights = _harmonic_sums(len(order))
    return [order[i] for i in rng.choices(range(len(order)), cum_weights=weights, k=count)]


_SUMS = {}


def _harmonic_sums(population: int) -> list:
    """``[H(1), H(2), ..., H(population)]``, computed once per population."""
    if population not in _SUMS:
        _SUMS[population] = list(itertools.accumulate(1.0 / rank
                                                      for rank in range(1, population + 1)))
    return _SUMS[population]


def wait_index_built(node, token: str, timeout: float = 900.0) -> float:
    """Seconds until the node's full-set index covers its log (its summary answers 200
    instead of 503): the build runs in slices beside DNS, so qps is measured after it."""
    return node.wait_ok("v1/sync/x-dmfdns/summary", timeout, "full-set index not built",
                        headers={"Authorization": f"Bearer {token}"}, every=0.5)


def memory(pid: int) -> dict:
    """Resident bytes of ``pid`` split into anonymous memory (the Python heap: index,
    caches) and file-backed pages (the LMDB map), from ``/proc/PID/smaps_rollup``."""
    found = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                found[parts[0].rstrip(":")] = int(parts[1]) * 1024
    rss, anon = found.get("Rss", 0), found.get("Anonymous", 0)
    return {"rss": rss, "anon": anon, "file": rss - anon}


def major_faults(pid: int) -> int:
    """Page faults of ``pid`` that had to read the disk (an LMDB page not in the cache)."""
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[9])


def cached_bytes(path: str) -> int | None:
    """Bytes of ``path`` in the kernel's page cache (util-linux ``fincore``), or None."""
    if shutil.which("fincore") is None:
        return None
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                          capture_output=True, text=True)
    try:
        return int(done.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def one_round(node, queries: str, seconds: int) -> dict:
    """One dnsperf run against ``node`` with what the node did during it."""
    before, cpu, faults = node.metrics(), node.cpu_seconds(), major_faults(node.pid)
    qps = dns.measure(node.dns_port, queries, seconds)
    after = node.metrics()
    hits, misses = (after[f"dmfdns_dns_answer_cache_{kind}_total"]
                    - before[f"dmfdns_dns_answer_cache_{kind}_total"]
                    for kind in ("hits", "misses"))
    return {"qps": qps, "hit_rate": hits / max(1.0, hits + misses),
            "cpu_us_per_query": 1e6 * (node.cpu_seconds() - cpu) / max(1.0, qps * seconds),
            "major_faults": major_faults(node.pid) - faults}


def compare(big, small, files: dict, rounds: int, seconds: int, say) -> dict:
    """``{shape: figures}`` for ``files`` = ``{shape: (big's query files, small's)}``, one
    file per run: a warm-up run each (answer caches filled, pages mapped), then ``rounds``
    alternating rounds (big first on even rounds, small first on odd ones)."""
    figures = {}
    for shape, (big_files, small_files) in files.items():
        say(f"DNS qps, {shape} names: warm-up, then {rounds} alternating rounds")
        dns.measure(big.dns_port, big_files[0], seconds)
        dns.measure(small.dns_port, small_files[0], seconds)
        runs = {"big": [], "small": []}
        for index in range(rounds):
            order = [("big", big, big_files[index + 1]),
                     ("small", small, small_files[index + 1])]
            for label, node, queries in order if index % 2 == 0 else order[::-1]:
                runs[label].append(one_round(node, queries, seconds))
        figures[shape] = summarise(runs)
    return figures


def summarise(runs: dict) -> dict:
    out = {"runs": runs}
    for label in ("big", "small"):
        qps = [run["qps"] for run in runs[label]]
        out[label] = {"qps": median(qps), "min": min(qps), "max": max(qps),
                      "hit_rate": median([run["hit_rate"] for run in runs[label]]),
                      "cpu_us_per_query": median([run["cpu_us_per_query"]
                                                  for run in runs[label]]),
                      "major_faults": sum(run["major_faults"] for run in runs[label])}
    out["ratio"] = out["big"]["qps"] / out["small"]["qps"]
    # CPU per query is steadier than qps on a shared box: the other load slows both.
    out["cpu_ratio"] = out["small"]["cpu_us_per_query"] / out["big"]["cpu_us_per_query"]
    return out


def report(shapes: dict, big_records: int, small_records: int) -> list[str]:
    lines = []
    for shape, f in shapes.items():
        big, small = f["big"], f["small"]
        lines.append(
            f"DNS qps, {shape} names: {big_records:,} records {big['qps']:,.0f} "
            f"(rounds {big['min']:,.0f}-{big['max']:,.0f}, cache hits {big['hit_rate']:.0%}, "
            f"{big['cpu_us_per_query']:.1f} us CPU/query, {big['major_faults']} major faults) "
            f"vs {small_records:,} {small['qps']:,.0f} ({small['min']:,.0f}-{small['max']:,.0f}, "
            f"hits {small['hit_rate']:.0%}, {small['cpu_us_per_query']:.1f} us): "
            f"ratio {f['ratio']:.2f} (by CPU per query {f['cpu_ratio']:.2f})")
    return lines


def memory_report(f: dict) -> str:
    mib = 2 ** 20
    a, index = f["a_memory"], f["index_anon_bytes"]
    cached = f.get("lmdb_cached_bytes")
    in_cache = "" if cached is None else f"; {cached / mib:,.0f} MiB of data.mdb in the page cache"
    return (f"A's memory serving {f['records']:,} records: RSS {a['rss'] / mib:,.0f} MiB = "
            f"anonymous {a['anon'] / mib:,.0f} MiB + file-backed {a['file'] / mib:,.0f} MiB "
            f"(LMDB pages mapped and ~20 MiB of code, reclaimable{in_cache}); of the "
            f"anonymous, the full-set index {index / mib:,.0f} MiB ({index / f['records']:.0f} "
            f"bytes per record: after its build minus before) and the answer cache "
            f"{f['a_cache_bytes'] / mib:,.0f} MiB; the {f['small_records']:,}-record node: "
            f"RSS {f['s_memory']['rss'] / mib:,.0f} MiB, anonymous "
            f"{f['s_memory']['anon'] / mib:,.0f} MiB")


def existing(path: str) -> bool:
    return os.path.exists(path) and os.path.getsize(path) > 0
