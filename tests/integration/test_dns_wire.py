"""A real node (make_service on the test reactor, real LMDB, loopback sockets) checked from
outside with dig and kdig: the RFC 8906 §8 queries over UDP and TCP, TCP pipelining, idle
timeout, connection cap, IPv6, truncation, and three nodes on one reactor.

The external tools run in threads (``deferToThread``) so the reactor keeps serving them.
"""

import dataclasses
import re
import shutil
import socket
import struct
import subprocess
import time

import pytest
import pytest_twisted
from dnslib import DNSRecord
from twisted.internet import defer, reactor, threads

from dmfdns.config import ListenAddress, load_config
from dmfdns.node import make_service

pytestmark = pytest.mark.integration

ZONE = "mesh.test"
NSID = "dmfdns-wire"


# --- starting nodes ------------------------------------------------------------------------

def node_config(data_dir, **dns):
    base = load_config(None, cwd=data_dir)
    options = dict(listen=(ListenAddress("127.0.0.1", 0), ListenAddress("::1", 0)),
                   nsid=NSID)
    options.update(dns)
    return dataclasses.replace(
        base, node=dataclasses.replace(base.node, data_dir=data_dir / "data"),
        store=dataclasses.replace(base.store, map_size=64 * 2**20),
        dns=dataclasses.replace(base.dns, **options),
        http=dataclasses.replace(base.http, listen=()))


def start(data_dir, **dns):
    node = make_service(node_config(data_dir, **dns), reactor)
    node.startService()
    return node


@pytest.fixture
def start_node(tmp_path):
    """``start_node(name, **dns_overrides)`` → a started node; all stopped at the end."""
    nodes = []

    def starter(name="node", **dns):
        directory = tmp_path / name
        directory.mkdir()
        node = start(directory, **dns)
        nodes.append(node)
        return node
    yield starter
    for node in nodes:
        pytest_twisted.blockon(node.stopService())


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory):
    node = start(tmp_path_factory.mktemp("rfc8906"))
    now = reactor.seconds()
    node.store.put(f"slot-1.mb-abc.{ZONE}", "v=dmp1;t=x;hello", expiry=now + 3600, now=now)
    node.store.put(f"big.{ZONE}", "x" * 3000, expiry=now + 3600, now=now)
    yield node
    pytest_twisted.blockon(node.stopService())


def port_of(node, family=4) -> int:
    (address,) = [a for a in node.dns_addresses("udp") if a.is_ipv6 == (family == 6)]
    tcp = [a for a in node.dns_addresses("tcp") if a.is_ipv6 == (family == 6)]
    assert tcp == [address], "UDP and TCP share the port"
    return address.port


def tool(argv):
    """Run dig/kdig in a thread; the Deferred fires with its stdout."""
    return threads.deferToThread(
        lambda: subprocess.run(argv, capture_output=True, text=True, timeout=15).stdout)


# --- reading dig and kdig output -------------------------------------------------------------

@dataclasses.dataclass
class Reply:
    status: str
    flags: set
    header_mbz: bool
    answers: int
    authority: int
    soa_answer: bool
    edns: int | None            # OPT version, None without OPT
    edns_mbz: bool
    options: set                # "NSID", "COOKIE", "EXPIRE", "CLIENT-SUBNET", "100", ...


def soa_in_answer(text: str) -> bool:
    """An SOA record inside the ANSWER section (NODATA carries one in AUTHORITY)."""
    if ";; ANSWER SECTION:" not in text:
        return False
    section = text.split(";; ANSWER SECTION:", 1)[1].split("\n\n", 1)[0]
    return bool(re.search(r"^\S+\s+\d+\s+IN\s+SOA\s", section, re.M))


def parse_dig(text: str) -> Reply:
    header = re.search(r"->>HEADER<<- opcode: \S+, status: (\S+),", text)
    flags = re.search(r";; flags:([^;]*);( MBZ: \S+;)? QUERY: \d+, ANSWER: (\d+), "
                      r"AUTHORITY: (\d+)", text)
    assert header and flags, text
    edns = re.search(r"; EDNS: version: (\d+), flags:[^;]*;( MBZ: \S+,)?", text)
    options = set()
    if edns:
        block = text[edns.end():].split(";; QUESTION SECTION", 1)[0]
        block = block.split("\n\n", 1)[0]
        for line in block.splitlines()[1:]:
            match = re.match(r"; (OPT=(\d+)|[A-Z-]+):", line)
            if match:
                options.add(match.group(2) or match.group(1))
    return Reply(status=header.group(1), flags=set(flags.group(1).split()),
                 header_mbz=bool(flags.group(2)), answers=int(flags.group(3)),
                 authority=int(flags.group(4)),
                 soa_answer=soa_in_answer(text),
                 edns=int(edns.group(1)) if edns else None,
                 edns_mbz=bool(edns and edns.group(2)), options=options)


def parse_kdig(text: str) -> Reply:
    header = re.search(r"->>HEADER<<- opcode: \S+; status: (\S+);", text)
    flags = re.search(r";; Flags:([^;]*); QUERY: \d+; ANSWER: (\d+); AUTHORITY: (\d+)", text)
    assert header and flags, text
    edns = re.search(r";; Version: (\d+); flags:[^;]*;", text)
    options = set()
    if edns:
        block = text[edns.end():].split("\n\n", 1)[0]
        for line in block.splitlines()[1:]:
            match = re.match(r";; (Option \((\d+)\)|[A-Z-]+):", line)
            if match:
                options.add(match.group(2) or match.group(1))
    flag_set = set(flags.group(1).split())
    return Reply(status=header.group(1), flags=flag_set - {"z"}, header_mbz="z" in flag_set,
                 answers=int(flags.group(2)), authority=int(flags.group(3)),
                 soa_answer=soa_in_answer(text),
                 edns=int(edns.group(1)) if edns else None, edns_mbz=False,
                 options=options)


# --- RFC 8906 section 8 ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Check:
    number: int
    dig: str
    kdig: str | None           # None: kdig cannot express this query (opcode, EDNS flags)
    status: str
    aa: bool
    soa: bool
    edns: int | None
    absent: frozenset = frozenset()
    present: frozenset = frozenset()


NOEDNS = "+noedns +noad +norec"
K_NOEDNS = "+noedns +noadflag +norecurse"
E0 = "+nocookie +edns=0 +noad +norec"
K_E0 = "+edns=0 +noadflag +norecurse"
E1 = "+nocookie +edns=1 +noednsneg +noad +norec"
K_E1 = "+edns=1 +noadflag +norecurse"

RFC8906 = [
    Check(1, f"{NOEDNS} {ZONE} SOA", f"{K_NOEDNS} {ZONE} SOA", "NOERROR", True, True, None),
    Check(2, f"{NOEDNS} {ZONE} TYPE1000", f"{K_NOEDNS} {ZONE} TYPE1000", "NOERROR", True,
          False, None),
    Check(3, f"{NOEDNS} +cd {ZONE} SOA", f"{K_NOEDNS} +cdflag {ZONE} SOA", "NOERROR", True,
          True, None),
    Check(4, f"+noedns +norec +ad {ZONE} SOA", f"+noedns +norecurse +adflag {ZONE} SOA",
          "NOERROR", True, True, None),
    Check(5, f"{NOEDNS} +zflag {ZONE} SOA", f"{K_NOEDNS} +zflag {ZONE} SOA", "NOERROR", True,
          True, None),
    Check(6, "+noedns +noad +opcode=15 +norec +header-only", None, "NOTIMP", False, False,
          None),
    Check(7, f"{NOEDNS} +tcp {ZONE} SOA", f"{K_NOEDNS} +tcp {ZONE} SOA", "NOERROR", True,
          True, None),
    Check(8, f"{E0} {ZONE} SOA", f"{K_E0} {ZONE} SOA", "NOERROR", True, True, 0),
    Check(9, f"{E1} {ZONE} SOA", f"{K_E1} {ZONE} SOA", "BADVERS", False, False, 0),
    Check(10, f"{E0} +ednsopt=100 {ZONE} SOA", f"{K_E0} +ednsopt=100 {ZONE} SOA", "NOERROR",
          True, True, 0, absent=frozenset({"100"})),
    Check(11, f"{E0} +ednsflags=0x40 {ZONE} SOA", None, "NOERROR", True, True, 0),
    Check(12, f"{E1} +ednsflags=0x40 {ZONE} SOA", None, "BADVERS", False, False, 0),
    Check(13, f"{E1} +ednsopt=100 {ZONE} SOA", f"{K_E1} +ednsopt=100 {ZONE} SOA", "BADVERS",
          False, False, 0, absent=frozenset({"100"})),
    Check(14, f"{E0} +dnssec {ZONE} SOA", f"{K_E0} +dnssec {ZONE} SOA", "NOERROR", True,
          True, 0),
    Check(15, f"{E1} +dnssec {ZONE} SOA", f"{K_E1} +dnssec {ZONE} SOA", "BADVERS", False,
          False, 0),
    Check(16, f"+edns=0 +cookie +nsid +expire +subnet=0.0.0.0/0 +noad +norec {ZONE} SOA",
          f"+edns=0 +cookie +nsid +expire +subnet=0.0.0.0/0 +noadflag +norecurse {ZONE} SOA",
          "NOERROR", True, True, 0, absent=frozenset({"EXPIRE", "CLIENT-SUBNET"}),
          present=frozenset({"NSID", "COOKIE"})),
]


def verify(check: Check, reply: Reply) -> list[str]:
    problems = []
    if reply.status != check.status:
        problems.append(f"status {reply.status}, expected {check.status}")
    if ("aa" in reply.flags) != check.aa:
        problems.append(f"aa {'set' if 'aa' in reply.flags else 'clear'}")
    if "ra" in reply.flags:
        problems.append("ra set")
    if reply.soa_answer != check.soa:
        problems.append(f"SOA in answer: {reply.soa_answer}")
    if not check.soa and reply.answers:
        problems.append(f"{reply.answers} answers, expected none")
    if reply.edns != check.edns:
        problems.append(f"OPT version {reply.edns}, expected {check.edns}")
    if reply.header_mbz or reply.edns_mbz:
        problems.append("MBZ bits copied")
    if reply.options & check.absent:
        problems.append(f"echoed {sorted(reply.options & check.absent)}")
    if check.present - reply.options:
        problems.append(f"missing {sorted(check.present - reply.options)}")
    return problems


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("client", ["dig", "kdig"])
@pytest_twisted.inlineCallbacks
def test_rfc8906_section8_queries(shared_node, client, transport):
    if shutil.which(client) is None:
        pytest.fail(f"{client} is not installed (bash .ci/run installs it)")
    port = port_of(shared_node)
    checks = [c for c in RFC8906 if getattr(c, client) is not None]
    runs = []
    for check in checks:
        args = getattr(check, client).split()
        if transport == "tcp":
            args.append("+tcp")
        runs.append(tool([client, "@127.0.0.1", "-p", str(port), "+tries=1" if client ==
                          "dig" else "+retry=0", *args]))
    outputs = yield defer.gatherResults(runs)
    parse = parse_dig if client == "dig" else parse_kdig
    failures = {check.number: verify(check, parse(output))
                for check, output in zip(checks, outputs)}
    assert {n: p for n, p in failures.items() if p} == {}
    assert len(checks) == (16 if client == "dig" else 13)


# --- answers from the store ----------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_txt_ent_nxdomain_and_case_echo(shared_node):
    port = port_of(shared_node)
    base = ["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+norec"]
    txt, ent, missing = yield defer.gatherResults([
        tool(base + [f"SLOT-1.mb-ABC.{ZONE}", "TXT"]),
        tool(base + [f"mb-abc.{ZONE}", "TXT"]),
        tool(base + [f"nothing.{ZONE}", "TXT"])])
    reply = parse_dig(txt)
    assert (reply.status, reply.answers, "aa" in reply.flags) == ("NOERROR", 1, True)
    assert '"v=dmp1;t=x;hello"' in txt
    assert f"SLOT-1.mb-ABC.{ZONE}." in txt           # 0x20: the question's case is kept
    reply = parse_dig(ent)
    assert (reply.status, reply.answers, reply.authority) == ("NOERROR", 0, 1)   # RFC 8020
    reply = parse_dig(missing)
    assert (reply.status, reply.authority) == ("NXDOMAIN", 1)
    assert re.search(r"IN\s+SOA\s", missing)


@pytest_twisted.inlineCallbacks
def test_large_answer_truncates_over_udp_and_completes_over_tcp(shared_node):
    port = port_of(shared_node)
    base = ["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+norec", f"big.{ZONE}", "TXT"]
    udp, tcp = yield defer.gatherResults([tool(base + ["+ignore"]), tool(base + ["+tcp"])])
    assert "tc" in parse_dig(udp).flags
    reply = parse_dig(tcp)
    assert "tc" not in reply.flags and reply.answers == 1
    assert tcp.count("x" * 255) >= 11                    # split into 255-byte strings


@pytest_twisted.inlineCallbacks
def test_ipv6_listener_answers(shared_node):
    port = port_of(shared_node, family=6)
    for extra in ([], ["+tcp"]):
        out = yield tool(["dig", "@::1", "-p", str(port), "+tries=1", ZONE, "SOA", *extra])
        assert parse_dig(out).soa_answer


# --- TCP behaviour (RFC 7766) ----------------------------------------------------------------

def frame(message: bytes) -> bytes:
    return struct.pack(">H", len(message)) + message


def read_frame(sock) -> bytes:
    head = read_exactly(sock, 2)
    return read_exactly(sock, struct.unpack(">H", head)[0])


def read_exactly(sock, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def query(name: str, qtype: str, qid: int) -> bytes:
    record = DNSRecord.question(name, qtype)
    record.header.id = qid
    return record.pack()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


@pytest_twisted.inlineCallbacks
def test_pipelined_queries_on_one_connection_are_all_answered(shared_node):
    port = port_of(shared_node)

    def exchange():
        with connect(port) as sock:
            sock.sendall(frame(query(ZONE, "SOA", 101)) + frame(query(f"x.{ZONE}", "TXT", 102))
                         + frame(query(f"slot-1.mb-abc.{ZONE}", "TXT", 103)))
            replies = [DNSRecord.parse(read_frame(sock)) for _ in range(3)]
            # Still open: a fourth query on the same connection is answered too.
            sock.sendall(frame(query(ZONE, "NS", 104)))
            replies.append(DNSRecord.parse(read_frame(sock)))
            return replies
    replies = yield threads.deferToThread(exchange)
    assert [r.header.id for r in replies] == [101, 102, 103, 104]
    assert [r.header.rcode for r in replies] == [0, 3, 0, 0]


@pytest_twisted.inlineCallbacks
def test_split_length_prefix_and_message_over_real_tcp(shared_node):
    port = port_of(shared_node)

    def exchange():
        data = frame(query(ZONE, "SOA", 7))
        with connect(port) as sock:
            for byte in data:
                sock.sendall(bytes([byte]))
                time.sleep(0.002)
            return DNSRecord.parse(read_frame(sock))
    reply = yield threads.deferToThread(exchange)
    assert reply.header.id == 7 and reply.header.rcode == 0


@pytest_twisted.inlineCallbacks
def test_idle_connections_are_closed_after_the_timeout(start_node):
    node = start_node(tcp_idle_timeout=0.5)
    port = port_of(node)

    def exchange():
        with connect(port) as sock:
            sock.sendall(frame(query(ZONE, "SOA", 1)))
            read_frame(sock)
            started = time.monotonic()
            closed = sock.recv(1) == b""
            return closed, time.monotonic() - started
    closed, waited = yield threads.deferToThread(exchange)
    assert closed and 0.3 < waited < 3
    assert node.transport_counters()[("tcp", "127.0.0.1:0")].idle_timeouts == 1


@pytest_twisted.inlineCallbacks
def test_oversize_message_closes_the_connection(start_node):
    node = start_node(max_tcp_message=100)
    port = port_of(node)

    def exchange():
        with connect(port) as sock:
            sock.sendall(struct.pack(">H", 200) + b"\x00" * 200)
            try:
                return sock.recv(10)
            except ConnectionResetError:
                return b""
    assert (yield threads.deferToThread(exchange)) == b""
    assert node.transport_counters()[("tcp", "127.0.0.1:0")].oversize_closed == 1


def closed_by_server(sock) -> bool:
    try:
        sock.settimeout(2)
        return sock.recv(10) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


@pytest_twisted.inlineCallbacks
def test_connection_cap_closes_the_least_recently_active_quiet_connection(start_node):
    node = start_node(max_tcp_connections=2)
    port = port_of(node)

    def exchange():
        first, second = connect(port), connect(port)
        for sock, qid in ((first, 1), (second, 2)):
            sock.sendall(frame(query(ZONE, "SOA", qid)))
            read_frame(sock)
        with connect(port) as third:
            third.sendall(frame(query(ZONE, "SOA", 3)))
            answered = DNSRecord.parse(read_frame(third)).header.id == 3
        evicted = closed_by_server(first)
        second.sendall(frame(query(ZONE, "SOA", 4)))
        second_kept = DNSRecord.parse(read_frame(second)).header.id == 4
        first.close()
        second.close()
        return answered, evicted, second_kept
    answered, evicted, second_kept = yield threads.deferToThread(exchange)
    assert answered and evicted and second_kept
    counters = node.transport_counters()[("tcp", "127.0.0.1:0")]
    assert counters.connections_evicted == 1 and counters.connections_refused == 0


# --- the litmus test of the seams ---------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_three_nodes_on_one_reactor_serve_their_own_data(start_node):
    nodes = [start_node(f"n{i}") for i in range(3)]
    now = reactor.seconds()
    for i, node in enumerate(nodes):
        node.store.put(f"who.{ZONE}", f"node-{i}", expiry=now + 600, now=now)
    outputs = yield defer.gatherResults([
        tool(["dig", "@127.0.0.1", "-p", str(port_of(node)), "+tries=1", "+short",
              f"who.{ZONE}", "TXT"]) for node in nodes])
    assert [out.strip() for out in outputs] == ['"node-0"', '"node-1"', '"node-2"']
    assert len({port_of(node) for node in nodes}) == 3
