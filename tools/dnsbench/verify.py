"""Before measuring: ask each server for a sample of names and compare the answers.

A benchmark that measures an error path (REFUSED, SERVFAIL, an empty zone) is worthless,
so every sampled name must get the same rcode and the same set of TXT values from every
server, and hits must be NOERROR with the values we loaded, misses NXDOMAIN.
"""

import random
import socket

from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

EDNS_SIZE = 4096


def ask(port: int, name: str, timeout=2.0, attempts=3):
    """``(rcode name, sorted TXT values)`` from 127.0.0.1:port; TCP when the UDP answer is
    truncated. ``("TIMEOUT", ())`` when no answer came."""
    query = DNSRecord.question(name, "TXT")
    query.add_ar(EDNS0(udp_len=EDNS_SIZE))
    for _ in range(attempts):
        try:
            reply = DNSRecord.parse(query.send("127.0.0.1", port, timeout=timeout))
            if reply.header.tc:
                reply = DNSRecord.parse(query.send("127.0.0.1", port, tcp=True,
                                                   timeout=timeout))
        except (socket.timeout, OSError):
            continue
        values = sorted(b"".join(rr.rdata.data).decode("ascii", "replace")
                        for rr in reply.rr if rr.rtype == QTYPE.TXT)
        return RCODE.get(reply.header.rcode), tuple(values)
    return "TIMEOUT", ()


def is_up(port: int, name: str) -> bool:
    return ask(port, name, timeout=0.5, attempts=1)[0] != "TIMEOUT"


def sample(data, hits: int, misses: int, seed: int) -> list:
    """``(name, expected rcode, expected values)`` for random hits and misses."""
    rng = random.Random(seed + 2)
    names = rng.sample(list(data.rrsets), min(hits, len(data.rrsets)))
    expected = [(n, "NOERROR", tuple(sorted(data.rrsets[n]))) for n in names]
    expected += [(n, "NXDOMAIN", ()) for n in rng.sample(data.misses, min(misses, len(data.misses)))]
    return expected


def compare(servers: dict, expected: list) -> list:
    """Problems found (empty when every server gave every expected answer). ``servers``
    maps a label to a port."""
    problems = []
    for name, rcode, values in expected:
        for label, port in servers.items():
            got = ask(port, name)
            if got != (rcode, values):
                problems.append(f"{label}: {name}: expected {rcode} with {len(values)} "
                                f"value(s), got {got[0]} with {len(got[1])}")
    return problems
