"""Clients that attack a DNS server from outside over loopback, shared by the reliability
tests and their Knot reference runs: malformed UDP and TCP input, an idle-connection flood.
Every attack is bounded in count and time; none needs the server to be dmfdns."""

import random
import socket
import struct
import time

from dnslib import QTYPE, DNSRecord

QTYPES = ["TXT", "SOA", "NS", "A", "AAAA", "ANY", "AXFR", "OPT", "CAA"]


def query(name="mesh.test", qtype="SOA", qid=None) -> bytes:
    record = DNSRecord.question(name, qtype)
    if qid is not None:
        record.header.id = qid
    return record.pack()


def mutate(rng: random.Random, wire: bytes) -> bytes:
    """One malformed message: a valid query with flipped bits, cut short, extended with
    junk, with a lying count, or plain random bytes."""
    kind = rng.randrange(5)
    data = bytearray(wire)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        data = data[:rng.randrange(len(data))]
    elif kind == 2:
        data += rng.randbytes(rng.randint(1, 64))
    elif kind == 3 and len(data) >= 12:
        data[rng.choice([4, 6, 8, 10]) + 1] = rng.randrange(256)
    else:
        data = bytearray(rng.randbytes(rng.randint(0, 600)))
    return bytes(data)


def seeds(rng: random.Random) -> bytes:
    name = ".".join(rng.choice(["slot-1", "mb-abc", "chunk-0001-x", "id-00", "a" * 50, "x"])
                    for _ in range(rng.randint(1, 4))) + ".mesh.test"
    return query(name, rng.choice(QTYPES), rng.randrange(65536))


def udp_fuzz(port: int, count: int, seed: int = 1) -> int:
    """Send ``count`` malformed datagrams (replies drained, not awaited); the count sent."""
    rng = random.Random(seed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for index in range(count):
            try:
                sock.sendto(mutate(rng, seeds(rng)), ("127.0.0.1", port))
            except BlockingIOError:
                time.sleep(0.001)
            if index % 64 == 0:
                _drain(sock)
                time.sleep(0.0005)      # bounded pace: the test measures survival, not speed
        _drain(sock)
    return count


def _drain(sock) -> None:
    while True:
        try:
            sock.recv(65535)
        except (BlockingIOError, ConnectionRefusedError):
            return


def tcp_fuzz(port: int, messages: int, seed: int = 2, per_connection: int = 20) -> int:
    """Send ``messages`` malformed TCP messages, ``per_connection`` on each connection:
    garbage frames, lying or split length prefixes, frames cut mid-way. The count sent."""
    rng = random.Random(seed)
    sent = 0
    while sent < messages:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                for _ in range(min(per_connection, messages - sent)):
                    sock.sendall(_tcp_piece(rng))
                    sent += 1
                sock.settimeout(0.05)
                try:
                    while sock.recv(65535):
                        pass
                except OSError:
                    pass
        except OSError:
            sent += 1                       # the server closed on us: that message counts
    return sent


def _tcp_piece(rng: random.Random) -> bytes:
    body = mutate(rng, seeds(rng))
    kind = rng.randrange(4)
    if kind == 0:
        return struct.pack("!H", len(body)) + body          # framed garbage
    if kind == 1:
        return struct.pack("!H", rng.randrange(65536)) + body  # a lying length
    if kind == 2:
        return struct.pack("!H", len(body))[:1]              # a split length prefix
    return struct.pack("!H", len(body) + 10) + body          # a frame cut short


def answers_soa(port: int, *, tcp: bool = False) -> bool:
    wire = query(qid=4242)
    try:
        if tcp:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(struct.pack("!H", len(wire)) + wire)
                length = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
                reply = DNSRecord.parse(sock.recv(length, socket.MSG_WAITALL))
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(2)
                sock.sendto(wire, ("127.0.0.1", port))
                reply = DNSRecord.parse(sock.recv(65535))
    except (OSError, struct.error, Exception):
        return False
    return reply.header.id == 4242 and any(rr.rtype == QTYPE.SOA for rr in reply.rr)


def idle_flood(port: int, count: int, source: str = "127.0.0.2") -> list:
    """``count`` idle TCP connections from ``source`` (a second loopback address)."""
    held = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        held.append(sock)
    return held


def still_open(sockets) -> int:
    """How many of ``sockets`` the server has not closed."""
    alive = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            alive += sock.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def flood_and_probe(port: int, flood: int, probes: int, wait: float) -> tuple[int, int]:
    """Hold ``flood`` idle connections from 127.0.0.2, then ask ``probes`` SOA queries
    from 127.0.0.1, each on a new connection: (answered, flood connections still open)."""
    held = idle_flood(port, flood)
    try:
        time.sleep(wait)
        answered = sum(answers_soa(port, tcp=True) for _ in range(probes))
        return answered, still_open(held)
    finally:
        for sock in held:
            sock.close()


KNOT_CONFIG = """\
server:
    rundir: "{workdir}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: error
database:
    storage: "{workdir}/db"
template:
  - id: default
    storage: "{workdir}"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: mesh.test.
    file: "{zone_file}"
"""


def start_knot(workdir, zone_file, port: int):
    """knotd (Debian's Knot DNS) serving ``zone_file`` on 127.0.0.1:``port``, answering;
    the caller stops it (``terminate`` and ``wait``)."""
    import subprocess
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    config = workdir / "knot.conf"
    config.write_text(KNOT_CONFIG.format(workdir=workdir, port=port, zone_file=zone_file))
    process = subprocess.Popen(["knotd", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    wait_answering(port, process)
    return process


def wait_answering(port: int, process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        if answers_soa(port):
            return
        time.sleep(0.1)
    raise AssertionError("server did not answer in time")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
