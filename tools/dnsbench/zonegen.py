"""Benchmark data shaped like a busy DMP zone: Knot's zone file, dmfdns's apex, dnsperf's
queries.

The owner names and value lengths follow docs/wire-format.md §3 and §4: chunk records
``chunk-NNNN-<hex12>`` (241-character values), mailbox slot manifests
``slot-N.mb-<hex12>`` (508-character values, two TXT character-strings each, some RRsets
holding two values) and identities ``id-<hex16>`` (212 characters). The payload after each
``d=`` is random base64 of the right length, not a signed record: the data is loaded
straight into the store, bypassing admission, which would refuse it. The DNS path never
looks inside a value, so the served bytes cost the same as real ones.
"""

import base64
import random
from dataclasses import dataclass

from dmfdns.proto import owners, prefixes, txt

CHUNK_VALUE_CHARS = 241
SLOT_VALUE_CHARS = 508
IDENTITY_VALUE_CHARS = 212
SHARE_CHUNK, SHARE_SLOT = 0.70, 0.20      # the rest are identities
TWO_VALUE_SLOTS = 0.25                    # slot RRsets holding two manifests
MAX_CHUNKS_PER_MESSAGE = 8


@dataclass
class BenchData:
    """``rrsets`` maps each owner name to its TXT values; ``misses`` are names that do not
    exist (NXDOMAIN), shaped like the real ones."""

    zone: str
    rrsets: dict
    misses: list

    @property
    def value_count(self) -> int:
        return sum(len(values) for values in self.rrsets.values())


def _value(rng: random.Random, prefix: str, chars: int) -> str:
    body_chars = chars - len(prefix)
    raw = rng.randbytes(body_chars * 3 // 4 + 3)
    return prefix + base64.b64encode(raw).decode("ascii")[:body_chars]


def _hex(rng: random.Random, chars: int) -> str:
    return f"{rng.getrandbits(chars * 4):0{chars}x}"


def _chunk_names(rng, zone, count):
    names = []
    while len(names) < count:
        msg_key = _hex(rng, 12)
        for index in range(min(rng.randint(1, MAX_CHUNKS_PER_MESSAGE), count - len(names))):
            names.append(owners.chunk(index, msg_key, zone))
    return names


def _slot_names(rng, zone, count):
    names = []
    while len(names) < count:
        mailbox = f"mb-{_hex(rng, 12)}"
        slots = rng.sample(range(owners.SLOT_COUNT), rng.randint(1, owners.SLOT_COUNT))
        for n in slots[:count - len(names)]:
            names.append(f"slot-{n}.{mailbox}.{zone}")
    return names


def generate(zone: str, names: int, seed: int) -> BenchData:
    """``names`` owner names in the 70/20/10 chunk/slot/identity mix, deterministic in
    ``seed``, plus a pool of non-existent names a tenth that size."""
    rng = random.Random(seed)
    chunks = round(names * SHARE_CHUNK)
    slots = round(names * SHARE_SLOT)
    rrsets = {}
    for name in _chunk_names(rng, zone, chunks):
        rrsets[name] = [_value(rng, prefixes.CHUNK, CHUNK_VALUE_CHARS)]
    for name in _slot_names(rng, zone, slots):
        count = 2 if rng.random() < TWO_VALUE_SLOTS else 1
        rrsets[name] = [_value(rng, prefixes.SLOT_MANIFEST, SLOT_VALUE_CHARS)
                        for _ in range(count)]
    while len(rrsets) < names:
        rrsets[f"id-{_hex(rng, 16)}.{zone}"] = [
            _value(rng, prefixes.IDENTITY, IDENTITY_VALUE_CHARS)]
    return BenchData(zone, rrsets, _misses(rng, zone, max(names // 10, 1), rrsets))


def _misses(rng, zone, count, existing):
    shapes = (lambda: owners.chunk(rng.randrange(8), _hex(rng, 12), zone),
              lambda: f"slot-{rng.randrange(10)}.mb-{_hex(rng, 12)}.{zone}",
              lambda: f"id-{_hex(rng, 16)}.{zone}")
    misses = set()
    while len(misses) < count:
        name = rng.choice(shapes)()
        if name not in existing:
            misses.add(name)
    return sorted(misses)


def _quoted(value: str) -> str:
    """A TXT value as zone-file character-strings, split where dmfdns splits it."""
    return " ".join(f'"{part.decode("ascii")}"' for part in txt.split(value.encode("ascii")))


def _apex(zone: str, ttl: int) -> str:
    return (f"$ORIGIN {zone}.\n$TTL {ttl}\n"
            f"@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 604800 60\n"
            f"@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n")


def write_apex_zone(path, zone: str, ttl: int) -> None:
    """Only the apex (SOA, NS, glue): dmfdns's zone file, its TXT data come from the store.
    The SOA equals Knot's, so negative answers carry the same authority section."""
    with open(path, "w", encoding="ascii") as out:
        out.write(_apex(zone, ttl))


def write_zone_file(path, data: BenchData, ttl: int) -> None:
    """An RFC 1035 master file for Knot: the apex, then every TXT record."""
    with open(path, "w", encoding="ascii") as out:
        out.write(_apex(data.zone, ttl))
        for name, values in data.rrsets.items():
            for value in values:
                out.write(f"{name}. IN TXT {_quoted(value)}\n")


def query_lines(data: BenchData, count: int, hit_share: float, seed: int) -> list:
    """``count`` dnsperf lines ``<name> TXT``: ``hit_share`` drawn uniformly from the
    existing names, the rest from the non-existent ones, shuffled."""
    rng = random.Random(seed + 1)
    names = list(data.rrsets)
    hits = round(count * hit_share)
    lines = [rng.choice(names) for _ in range(hits)]
    lines += [rng.choice(data.misses) for _ in range(count - hits)]
    rng.shuffle(lines)
    return [f"{name} TXT" for name in lines]


def distinct_lines(lines: list, seed: int) -> list:
    """``lines`` with each name spelled in a random letter case (RFC 4343: the same name,
    as resolvers using 0x20 send it), so that practically every line is a different query
    (an answer-cache miss) while the answers stay those of the plain file."""
    rng = random.Random(seed + 2)
    spelled = []
    for line in lines:
        name, qtype = line.split()
        spelled.append("".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c
                               for c in name) + " " + qtype)
    return spelled


def write_queries(path, lines) -> None:
    with open(path, "w", encoding="ascii") as out:
        out.write("\n".join(lines) + "\n")
