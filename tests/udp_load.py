"""Bounded UDP DNS load from one loopback source address, for the RRL and worker tests.

Run as a script (its own process, so its sending loop never competes with the test's GIL):

    python tests/udp_load.py flood SOURCE PORT QNAME RATE SECONDS AFTER

sends the TXT query for QNAME (EDNS, 4096-byte payload) from SOURCE to 127.0.0.1:PORT at
RATE queries per second for SECONDS, reading every response as it goes; then, for AFTER
seconds, one query every 100 ms, noting when the first full (not truncated) answer comes
back. It prints one JSON line: queries and bytes sent, responses, bytes, truncated and full
responses received during the flood, the achieved rate, and ``recovered_after`` (seconds
from the end of the flood to the first full answer, or null).
"""

import json
import select
import socket
import sys
import time

from dnslib import EDNS0, DNSRecord


def query(qname: str, qid: int) -> bytes:
    record = DNSRecord.question(qname, "TXT")
    record.header.id = qid
    record.add_ar(EDNS0(udp_len=4096))
    return bytes(record.pack())


def is_full(response: bytes) -> bool:
    return len(response) > 12 and not response[2] & 0x02 and response[6:8] != b"\x00\x00"


class Counts:
    def __init__(self):
        self.sent = self.sent_bytes = self.received = self.received_bytes = 0
        self.truncated = self.full = 0

    def note(self, response: bytes) -> None:
        self.received += 1
        self.received_bytes += len(response)
        if len(response) > 3 and response[2] & 0x02:
            self.truncated += 1
        elif is_full(response):
            self.full += 1


def drain(sock, counts: Counts) -> None:
    while True:
        try:
            counts.note(sock.recv(65535))
        except BlockingIOError:
            return


def flood(source: str, port: int, qname: str, rate: float, seconds: float,
          after: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    wire = query(qname, 1)
    counts = Counts()
    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * rate) - counts.sent
        for _ in range(min(due, 200)):
            try:
                sock.send(wire)
            except BlockingIOError:
                break
            counts.sent += 1
            counts.sent_bytes += len(wire)
        drain(sock, counts)
        if due <= 0:
            time.sleep(0.0005)
    elapsed = time.monotonic() - start
    time.sleep(0.2)
    drain(sock, counts)
    return {"sent": counts.sent, "sent_bytes": counts.sent_bytes,
            "received": counts.received, "received_bytes": counts.received_bytes,
            "truncated": counts.truncated, "full": counts.full,
            "rate": counts.sent / elapsed, "recovered_after": recover(sock, qname, after)}


def recover(sock, qname: str, after: float) -> float | None:
    """Seconds from now until a full answer comes back (one query per 100 ms)."""
    start = time.monotonic()
    qid = 2
    while time.monotonic() - start < after:
        sock.send(query(qname, qid))
        ready, _, _ = select.select([sock], [], [], 0.1)
        while ready:
            try:
                response = sock.recv(65535)
            except BlockingIOError:
                break
            if response[:2] == qid.to_bytes(2, "big") and is_full(response):
                return time.monotonic() - start
        qid += 1
    return None


def main(argv) -> None:
    if argv[:1] != ["flood"] or len(argv) != 7:
        sys.exit(__doc__)
    _, source, port, qname, rate, seconds, after = argv
    print(json.dumps(flood(source, int(port), qname, float(rate), float(seconds),
                           float(after))))


if __name__ == "__main__":
    main(sys.argv[1:])
