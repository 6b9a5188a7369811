"""Where dmfdns spends its time per query, measured in-process without sockets.

The node is built exactly as ``dmfdns serve`` builds it (``make_service`` on the same
config and store), but never started: the UDP listener's protocol gets a transport that
drops what it is given, and the benchmark's queries (the same wire shape dnsperf sends:
RD, EDNS0 with a 4096-byte buffer) are fed to it directly. Three figures come out:

* the responder alone (``Responder.respond``), in CPU microseconds per query;
* the datagram handler (``DNSDatagramProtocol.datagramReceived``: responder, counters,
  duration histogram, the transport write), in CPU microseconds per query;
* a cProfile of the datagram handler, by own time per function.

What the live benchmark measures beyond the datagram handler (one server CPU-second
divided by its qps) is the reactor and the kernel: epoll, recvfrom, sendto.
"""

import cProfile
import io
import pstats
import time

from dnslib import EDNS0, DNSRecord
from twisted.internet import task

from dmfdns.config import load_config
from dmfdns.node import make_service


class _DroppingTransport:
    """Stands in for the UDP port: counts the responses and drops them."""

    def __init__(self):
        self.written = 0

    def write(self, data, addr=None):
        self.written += 1


def wire_queries(lines) -> list:
    """The wire form of ``<name> TXT`` lines as dnsperf -e sends them."""
    queries = []
    for index, line in enumerate(lines):
        name, qtype = line.split()[:2]
        query = DNSRecord.question(name, qtype)
        query.header.id = index & 0xFFFF
        query.add_ar(EDNS0(udp_len=4096))
        queries.append(query.pack())
    return queries


def _per_query_us(call, queries, passes) -> float:
    """CPU time of this process per call: other tenants' load does not inflate it."""
    started = time.process_time()
    for _ in range(passes):
        for query in queries:
            call(query)
    return 1e6 * (time.process_time() - started) / (passes * len(queries))


def profile(config_path, lines, *, passes=3, top=25) -> dict:
    """Per-query costs and the cProfile table for the queries in ``lines``."""
    config = load_config(config_path)
    clock = task.Clock()
    clock.advance(time.time())
    node = make_service(config, clock)
    try:
        udp = next(l.target for l in node.listeners if l.kind == "udp")
        udp.transport = _DroppingTransport()
        queries = wire_queries(lines)
        client = ("127.0.0.1", 5300)
        now = clock.seconds()

        def respond(query):
            return node.responder.respond(query, now=now, max_udp=udp.max_udp, proto="udp",
                                          client=client[0])

        def datagram(query):
            udp.datagramReceived(query, client)

        for query in queries[:2000]:           # warm the page cache and the code paths
            datagram(query)
        by_rcode = {}
        for query in queries:
            by_rcode.setdefault(_rcode(respond(query)), []).append(query)
        respond_us = _per_query_us(respond, queries, passes)
        datagram_us = _per_query_us(datagram, queries, passes)
        rcode_us = {code: {"share": round(len(group) / len(queries), 4),
                           "respond_us": round(_per_query_us(respond, group, passes), 2)}
                    for code, group in sorted(by_rcode.items())}
        profiler = cProfile.Profile()
        profiler.enable()
        for query in queries:
            datagram(query)
        profiler.disable()
        return {"queries": len(queries), "respond_us": round(respond_us, 2),
                "datagram_us": round(datagram_us, 2), "by_rcode": rcode_us,
                "profile": _table(profiler, len(queries), top),
                "areas": _areas(profiler)}
    finally:
        node.close()


RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
               5: "REFUSED"}


def _rcode(response) -> str:
    if not response or len(response) < 4:
        return "none"
    return RCODE_NAMES.get(response[3] & 0x0F, str(response[3] & 0x0F))


def _areas(profiler) -> dict:
    """Own time by source file (dmfdns modules by name, libraries as one), in percent."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    areas = {}
    for (path, _, func), (_, _, own, _, _) in stats.stats.items():
        area = _short(path)
        if not area.startswith("dmfdns/"):
            area = area.split("/", 1)[0] if "/" in area else "C built-ins (lmdb, re, len …)"
        areas[area] = areas.get(area, 0.0) + own
    total = sum(areas.values()) or 1e-9
    return {a: round(100 * t / total, 1)
            for a, t in sorted(areas.items(), key=lambda item: -item[1])}


def _table(profiler, queries, top) -> str:
    """The ``top`` functions by own time, in microseconds per query (cProfile adds its
    own overhead to every call, so these sum to more than the plain timing)."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (path, line, func), (_, calls, own, cumulative, _) in stats.stats.items():
        where = _short(path)
        rows.append((own, cumulative, calls, f"{where}:{line}({func})"))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows) or 1e-9
    out = ["| own µs/query | own % | cumulative µs/query | calls/query | function |",
           "|---|---|---|---|---|"]
    for own, cumulative, calls, name in rows[:top]:
        out.append(f"| {1e6 * own / queries:.2f} | {100 * own / total:.1f} "
                   f"| {1e6 * cumulative / queries:.2f} | {calls / queries:.2f} | `{name}` |")
    return "\n".join(out)


def _short(path: str) -> str:
    for marker in ("/dmfdns/", "/twisted/", "/dnslib/", "/lmdb/"):
        if marker in path:
            return marker.strip("/") + "/" + path.split(marker, 1)[1]
    return path.rsplit("/", 1)[-1]
