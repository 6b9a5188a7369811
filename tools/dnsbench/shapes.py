"""The traffic shapes of the benchmark, each measured on dmfdns and Knot side by side.

A shape says what dnsperf sends (extra flags, which query file), what else happens during
the run (HTTP writes to dmfdns) and which server set answers (one pinned process each, or
two DNS processes / two UDP workers unpinned). ``target`` is the ratio dmfdns/Knot the
project aims at for the shape (issue 10); None when there is none.
"""

from dataclasses import dataclass

# A fixed 8-byte client cookie (RFC 7873 section 4.1): dnsperf sends the same option on
# every query, so dmfdns computes a server cookie for every answer.
CLIENT_COOKIE_HEX = "0102030405060708"


@dataclass(frozen=True)
class Shape:
    name: str
    title: str
    dnsperf_args: tuple = ()
    mode: str = "udp"             # dnsperf -m
    queries: str = "mixed"        # "mixed": the query file; "distinct": every line distinct
    writes_per_s: int = 0         # HTTP writes per second to dmfdns during its runs
    processes: int = 1            # dmfdns [dns] workers / Knot udp-workers; >1: unpinned
    target: float | None = 0.5


SHAPES = {shape.name: shape for shape in (
    Shape("plain", "UDP, EDNS, no options"),
    Shape("cookie", "UDP, a client cookie on every query (dnsperf -E 10:<hex>)",
          ("-E", f"10:{CLIENT_COOKIE_HEX}")),
    Shape("tcp", "TCP, many queries per connection (dnsperf -m tcp)", mode="tcp",
          target=0.4),
    Shape("writes", "UDP while 50 HTTP writes/s go to dmfdns", writes_per_s=50),
    Shape("miss", "UDP, every query a distinct spelling (0x20): answer-cache misses",
          queries="distinct", target=0.35),
    Shape("workers2", "UDP, 2 dmfdns processes vs Knot 2 UDP workers, nothing pinned",
          processes=2, target=None),
)}
DEFAULT = ",".join(SHAPES)


def parse(text: str) -> list:
    """``"plain,tcp"`` -> [Shape, ...]; ValueError naming an unknown shape."""
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in SHAPES]
    if unknown or not names:
        raise ValueError(f"unknown shape(s) {unknown}; choose from {DEFAULT}")
    return [SHAPES[name] for name in names]
