"""A real node with its encrypted listeners on loopback (issue 17): the HTTP API over HTTPS
(records written through the one outbound client), DNS over TLS answering like DNS over TCP
(ALPN ``dot``, pipelining, session resumption), kdig +tls, idle TLS connections unable to
lock others out, the certificate reloaded without dropping connections, a peer syncing over
HTTPS (and over mutual TLS), bad peer certificates counted by cause, the plain-HTTP peer
policy."""

import hashlib
import pathlib
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time

import pytest
import pytest_twisted
from dnslib import QTYPE, DNSRecord
from prometheus_client import generate_latest
from twisted.internet import reactor, task, threads

from dmfdns.client.writer import HttpNode, WriteError
from dmfdns.config import ConfigError
from dmfdns.node import make_service
from dmfdns.outbound.client import HttpClient
from dmfdns.outbound.tls import TlsPolicy, TlsSettings
from dmfdns.proto import slot_manifest
from dmfdns.proto.signing import Signer

from node_support import dns_port, http_port, node_config, start_node
from tls_support import make_material, serial

pytestmark = pytest.mark.integration
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    return make_material(tmp_path_factory.mktemp("tls"))


def tls_config(tmp_path, material, name="n1", pair=None, *, http_options=None,
               dns_options=None, cluster=None):
    pair = pair or material.good
    http = {"tls_listen": ["127.0.0.1:0"], "tls_cert_file": str(pair.cert),
            "tls_key_file": str(pair.key), **(http_options or {})}
    dns = {"tls_listen": ["127.0.0.1:0"], "max_tcp_connections": 8,
           "max_tcp_connections_per_client": 8, "tcp_idle_timeout": "3s",
           **(dns_options or {})}
    return node_config(tmp_path, tmp_path / name, node_id=name, http_options=http,
                       dns_options=dns, cluster=cluster)


@pytest.fixture
def nodes():
    started = []

    def start(config):
        started.append(start_node(config))
        return started[-1]
    yield start
    for node in started:
        pytest_twisted.blockon(node.stopService())


def slot_record(now: float) -> tuple[str, str]:
    alice = Signer(hashlib.sha256(b"tls/alice").digest())
    recipient = hashlib.sha256(b"tls bob x25519").digest()
    value = slot_manifest.sign(bytes(16), alice.public_key, recipient, 1, 1, 0, int(now),
                               int(now) + 300, [bytes(32)], alice)
    return f"slot-0.mb-{hashlib.sha256(recipient).hexdigest()[:12]}.mesh.test", value


def client_context(material, alpn=("dot",)) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(material.ca))
    context.set_alpn_protocols(list(alpn))
    return context


def dot_exchange(port: int, queries: list[bytes], context, session=None,
                 hostname="dmp.mesh.test"):
    """Send ``queries`` pipelined in one write over one DoT connection; (answers, socket)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    conn = context.wrap_socket(raw, server_hostname=hostname, session=session)
    conn.sendall(b"".join(struct.pack("!H", len(q)) + q for q in queries))
    answers = []
    buffer = b""
    while len(answers) < len(queries):
        while len(buffer) < 2 or len(buffer) < 2 + struct.unpack("!H", buffer[:2])[0]:
            chunk = conn.recv(65535)
            if not chunk:
                raise AssertionError("connection closed early")
            buffer += chunk
        size = struct.unpack("!H", buffer[:2])[0]
        answers.append(DNSRecord.parse(buffer[2:2 + size]))
        answers[-1].wire_size = size
        buffer = buffer[2 + size:]
    return answers, conn


def tcp_answer(port: int, query: bytes) -> DNSRecord:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        size = struct.unpack("!H", sock.recv(2))[0]
        data = b""
        while len(data) < size:
            data += sock.recv(size - len(data))
    return DNSRecord.parse(data)


async def publish_over_https(node, material) -> tuple[str, str]:
    name, value = slot_record(reactor.seconds())
    client = HttpClient(reactor, timeout=TIMEOUT,
                        tls=TlsPolicy(TlsSettings(ca_file=material.ca)))
    writer = HttpNode(reactor, f"https://127.0.0.1:{http_port(node, 'https')}",
                      client=client)
    assert await writer.publish(name, value, 300) == 201
    await writer.close()
    return name, value


@pytest_twisted.ensureDeferred
async def test_records_are_written_and_read_over_https(tmp_path, material, nodes):
    node = nodes(tls_config(tmp_path, material))
    name, value = await publish_over_https(node, material)
    client = HttpClient(reactor, timeout=TIMEOUT,
                        tls=TlsPolicy(TlsSettings(ca_file=material.ca)))
    response = await client.request(
        "GET", f"https://127.0.0.1:{http_port(node, 'https')}/v1/records/{name}")
    assert response.status == 200 and value in response.body.decode()
    await client.close()
    assert [v.value for v in node.store.get(name, now=reactor.seconds())] == [value]


@pytest_twisted.ensureDeferred
async def test_a_writer_that_does_not_trust_the_node_gets_a_named_error(tmp_path, material,
                                                                       nodes):
    node = nodes(tls_config(tmp_path, material))
    writer = HttpNode(reactor, f"https://127.0.0.1:{http_port(node, 'https')}",
                      timeout=TIMEOUT)
    with pytest.raises(WriteError, match="does not end at a trusted CA"):
        await writer.publish("x.mesh.test", "v", 60)
    await writer.close()
    assert node.store.stats().values == 0


@pytest_twisted.ensureDeferred
async def test_dns_over_tls_answers_like_tcp_pipelined_with_alpn_and_resumption(
        tmp_path, material, nodes):
    node = nodes(tls_config(tmp_path, material))
    name, value = await publish_over_https(node, material)
    dot, tcp = http_port(node, "dot"), dns_port(node)
    queries = [DNSRecord.question(name, "TXT"), DNSRecord.question("mesh.test", "SOA"),
               DNSRecord.question("nothing.mesh.test", "TXT")]
    for index, query in enumerate(queries):
        query.header.id = 100 + index
    packed = [q.pack() for q in queries]
    context = client_context(material)

    def exchange():
        first, conn = dot_exchange(dot, packed, context)
        protocol, session, version = conn.selected_alpn_protocol(), conn.session, conn.version()
        conn.close()
        again, conn2 = dot_exchange(dot, packed[:1], context, session=session)
        reused = conn2.session_reused
        conn2.close()
        over_tcp = [tcp_answer(tcp, q) for q in packed]
        return first, again, protocol, version, reused, over_tcp
    first, again, protocol, version, reused, over_tcp = await threads.deferToThread(exchange)
    assert protocol == "dot" and version in ("TLSv1.2", "TLSv1.3")
    assert [a.header.id for a in first] == [100, 101, 102]           # in order, pipelined
    assert [a.pack()[2:] for a in first] == [a.pack()[2:] for a in over_tcp]
    assert first[0].rr[0].rtype == QTYPE.TXT
    assert b"".join(first[0].rr[0].rdata.data).decode() == value
    assert first[2].header.rcode == 3
    assert again[0].pack() == first[0].pack()
    assert reused, "the second connection did not resume the TLS session"


@pytest_twisted.ensureDeferred
async def test_tls_below_1_2_is_refused(tmp_path, material, nodes):
    node = nodes(tls_config(tmp_path, material))
    context = client_context(material)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await threads.deferToThread(dot_exchange, http_port(node, "dot"),
                                    [DNSRecord.question("mesh.test").pack()], context)


@pytest_twisted.ensureDeferred
async def test_kdig_over_tls_resolves_a_slot_record(tmp_path, material, nodes):
    if shutil.which("kdig") is None:
        pytest.fail("kdig is not installed (bash .ci/run installs knot-dnsutils)")
    node = nodes(tls_config(tmp_path, material))
    name, value = await publish_over_https(node, material)
    command = ["kdig", "@127.0.0.1", "-p", str(http_port(node, "dot")),
               f"+tls-ca={material.ca}", "+tls-hostname=dmp.mesh.test", name, "TXT"]
    result = await threads.deferToThread(subprocess.run, command, capture_output=True,
                                         text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert "status: NOERROR" in result.stdout and value[:40] in result.stdout
    assert "TLS" in result.stdout                     # kdig reports the TLS session
    bad = await threads.deferToThread(subprocess.run, command[:3] + [
        f"+tls-ca={material.other_ca}", "+tls-hostname=dmp.mesh.test", name, "TXT"],
        capture_output=True, text=True, timeout=20)
    assert "NOERROR" not in bad.stdout                # kdig refuses the untrusted node


@pytest_twisted.ensureDeferred
async def test_idle_tls_connections_cannot_lock_others_out(tmp_path, material, nodes):
    node = nodes(tls_config(tmp_path, material))
    dot = http_port(node, "dot")
    query = DNSRecord.question("mesh.test", "SOA").pack()

    def flood_then_ask():
        idle = []
        for index in range(24):       # 3x the listener's cap: no handshake, half of one
            sock = socket.create_connection(("127.0.0.1", dot), timeout=TIMEOUT)
            if index % 2:
                sock.sendall(b"\x16\x03\x01\x02\x00\x01")   # a ClientHello that stops
            idle.append(sock)
        time.sleep(1.5)               # past the new-connection grace
        try:
            answers, conn = dot_exchange(dot, [query], client_context(material))
            conn.close()
            return answers
        finally:
            for sock in idle:
                sock.close()
    answers = await threads.deferToThread(flood_then_ask)
    assert answers[0].header.rcode == 0 and answers[0].rr[0].rtype == QTYPE.SOA
    (listener,) = [l for l in node.listeners if l.kind == "dot"]
    assert listener.counters.connections_evicted + listener.counters.connections_refused > 0


@pytest_twisted.ensureDeferred
async def test_a_replaced_certificate_is_served_after_reload_without_dropping_connections(
        tmp_path, material, nodes):
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    cert.write_bytes(material.good.cert.read_bytes())
    key.write_bytes(material.good.key.read_bytes())
    node = nodes(tls_config(tmp_path, material, http_options={
        "tls_cert_file": str(cert), "tls_key_file": str(key)}))
    dot = http_port(node, "dot")
    query = DNSRecord.question("mesh.test", "SOA").pack()
    context = client_context(material)

    def served_serial() -> int:
        from cryptography import x509
        answers, conn = dot_exchange(dot, [query], context)
        der = conn.getpeercert(binary_form=True)
        conn.close()
        assert answers[0].header.rcode == 0
        return x509.load_der_x509_certificate(der).serial_number

    assert await threads.deferToThread(served_serial) == serial(material.good.cert)
    held_answers, held = await threads.deferToThread(dot_exchange, dot, [query], context)
    cert.write_bytes(material.renewed.cert.read_bytes())
    key.write_bytes(material.renewed.key.read_bytes())
    lines = node.reload_certificates()
    assert len(lines) == 2 and all("reloaded" in line for line in lines)
    assert await threads.deferToThread(served_serial) == serial(material.renewed.cert)

    def held_still_answers():
        held.sendall(struct.pack("!H", len(query)) + query)
        size = struct.unpack("!H", held.recv(2))[0]
        data = held.recv(size)
        held.close()
        return DNSRecord.parse(data)
    assert (await threads.deferToThread(held_still_answers)).header.rcode == 0
    # A broken file on disk keeps the certificate in service.
    key.write_text("half written")
    lines = node.reload_certificates()
    assert all("NOT reloaded" in line for line in lines)
    assert await threads.deferToThread(served_serial) == serial(material.renewed.cert)


def _metric(node, text: str) -> float:
    for line in generate_latest(node.metrics.registry).decode().splitlines():
        if line.startswith(text + " "):
            return float(line.split()[-1])
    return 0.0


async def _until(check, seconds=15.0):
    deadline = reactor.seconds() + seconds
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError("condition not met in time")
        await task.deferLater(reactor, 0.1, lambda: None)


SYNC = {"sync_token": "tls-sync-token", "sync_interval": "200ms", "peer_timeout": "2s"}


@pytest_twisted.ensureDeferred
async def test_a_peer_syncs_over_https_and_a_bad_certificate_is_counted_by_cause(
        tmp_path, material, nodes):
    source = nodes(tls_config(tmp_path, material, "src", cluster=SYNC))
    url = f"https://127.0.0.1:{http_port(source, 'https')}"
    follower = nodes(tls_config(tmp_path, material, "follower", cluster={
        **SYNC, "peers": [url], "ca_file": str(material.ca)}))
    stranger = nodes(tls_config(tmp_path, material, "stranger", cluster={
        **SYNC, "peers": [url], "ca_file": str(material.other_ca)}))
    name, value = await publish_over_https(source, material)
    await _until(lambda: follower.store.get(name, now=reactor.seconds()))
    label = f'dmfdns_sync_errors_total{{peer="{url}",reason="tls_untrusted"}}'
    await _until(lambda: _metric(stranger, label) >= 1)
    assert not stranger.store.get(name, now=reactor.seconds())
    assert _metric(follower, label) == 0


@pytest_twisted.ensureDeferred
async def test_mutual_tls_between_peers(tmp_path, material, nodes):
    source = nodes(tls_config(tmp_path, material, "src", cluster={
        **SYNC, "require_client_certificate": True},
        http_options={"tls_client_ca_file": str(material.ca)}))
    url = f"https://127.0.0.1:{http_port(source, 'https')}"
    with_cert = nodes(tls_config(tmp_path, material, "member", cluster={
        **SYNC, "peers": [url], "ca_file": str(material.ca),
        "client_cert_file": str(material.client.cert),
        "client_key_file": str(material.client.key)}))
    token_only = nodes(tls_config(tmp_path, material, "tokenonly", cluster={
        **SYNC, "peers": [url], "ca_file": str(material.ca)}))
    name, _ = await publish_over_https(source, material)
    await _until(lambda: with_cert.store.get(name, now=reactor.seconds()))
    label = f'dmfdns_sync_errors_total{{peer="{url}",reason="forbidden"}}'
    await _until(lambda: _metric(token_only, label) >= 1)
    assert not token_only.store.get(name, now=reactor.seconds())


def test_a_plain_http_peer_on_the_internet_is_refused_unless_allowed(tmp_path, material):
    cluster = {"peers": ["http://8.8.8.8:8053"]}     # sync off (no token): nothing is sent
    with pytest.raises(ConfigError, match="allow_plain_http_peers"):
        make_service(tls_config(tmp_path, material, cluster=cluster), reactor)
    node = make_service(tls_config(tmp_path, material, cluster={
        **cluster, "allow_plain_http_peers": True}), reactor)
    node.close()
    private = make_service(tls_config(tmp_path, material, "p", cluster={
        "peers": ["http://10.0.0.2:8053", "http://127.0.0.1:1"]}), reactor)
    private.close()


def test_manifest_peers_over_plain_http_on_the_internet_are_skipped():
    from dmfdns.store.memory_store import MemoryStore
    from dmfdns.sync.service import ClusterSettings, ClusterSync
    settings = ClusterSettings(node_id="n1", zones=("mesh.test",), static_peers=(
        "http://8.8.8.8:8053", "https://8.8.8.8:8443", "http://10.1.1.1:8053"))
    sync = ClusterSync(MemoryStore(), task.Clock(), settings, transport=object())
    sync._follow_peers()
    assert sorted(sync.anti_entropy.states) == ["http://10.1.1.1:8053",
                                                "https://8.8.8.8:8443"]


def test_missing_or_mismatched_certificate_files_are_config_errors(tmp_path, material):
    with pytest.raises(ConfigError, match="cannot read"):
        make_service(tls_config(tmp_path, material, http_options={
            "tls_cert_file": str(tmp_path / "nope.pem")}), reactor)
    with pytest.raises(ConfigError, match="unusable"):
        make_service(tls_config(tmp_path, material, http_options={
            "tls_key_file": str(material.renewed.key)}), reactor)


@pytest_twisted.ensureDeferred
async def test_a_ca_file_for_one_peer_replaces_ca_file_for_that_peer(tmp_path, material,
                                                                      nodes):
    source = nodes(tls_config(tmp_path, material, "src", cluster=SYNC))
    url = f"https://127.0.0.1:{http_port(source, 'https')}"
    follower = nodes(tls_config(tmp_path, material, "follower", cluster={
        **SYNC, "peers": [url], "ca_file": str(material.other_ca),
        "peer_ca_files": {url: str(material.ca)}}))
    name, _ = await publish_over_https(source, material)
    await _until(lambda: follower.store.get(name, now=reactor.seconds()))


def test_peer_ca_files_are_checked_and_anchored_at_the_config_file(tmp_path):
    from dmfdns.config import parse_config
    config = parse_config('[cluster]\npeer_ca_files = { "HTTPS://N2.example.net" = "a.pem", '
                          '"https://[::1]:8443/" = "/etc/b.pem" }\n', base=tmp_path)
    assert config.cluster.peer_ca_files == (
        ("https://[::1]:8443", pathlib.Path("/etc/b.pem")),
        ("https://n2.example.net:443", tmp_path / "a.pem"))
    for bad in ('{ "http://n2.example.net" = "a.pem" }', '{ "https://n2/x" = "a.pem" }',
                '{ "https://n2" = "" }', '["a.pem"]',
                '{ "https://n2" = "a.pem", "https://n2:443" = "b.pem" }'):
        with pytest.raises(ConfigError, match="peer_ca_files"):
            parse_config(f"[cluster]\npeer_ca_files = {bad}\n", base=tmp_path)


@pytest_twisted.ensureDeferred
async def test_idle_https_connections_cannot_lock_others_out(tmp_path, material, nodes):
    node = nodes(tls_config(tmp_path, material, http_options={"max_connections": 6}))
    port = http_port(node, "https")
    idle = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            for _ in range(18)]                      # 3x the cap, no handshake at all
    try:
        await task.deferLater(reactor, 1.5, lambda: None)   # past the new-connection grace
        client = HttpClient(reactor, timeout=TIMEOUT,
                            tls=TlsPolicy(TlsSettings(ca_file=material.ca)))
        response = await client.request("GET", f"https://127.0.0.1:{port}/healthz")
        await client.close()
    finally:
        for sock in idle:
            sock.close()
    assert response.status == 200
    assert node.http.site.counters.connections_evicted > 0


def test_check_config_reads_the_certificate_files(tmp_path, material):
    from dmfdns.config import defaults_dir
    config = tmp_path / "node.toml"
    config.write_text(f"""zones = ["{defaults_dir() / 'mesh.test.zone'}"]
[http]
tls_listen = ["127.0.0.1:0"]
tls_cert_file = "{material.good.cert}"
tls_key_file = "{tmp_path / 'missing.key'}"
""")
    result = subprocess.run([sys.executable, "-m", "dmfdns", "check-config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("missing.key: cannot read: No such file or "
                                          "directory"), result.stderr


@pytest_twisted.ensureDeferred
async def test_clear_text_to_the_tls_ports_is_closed_quietly(tmp_path, material, nodes):
    from twisted.logger import globalLogPublisher
    node = nodes(tls_config(tmp_path, material))
    logged = []
    globalLogPublisher.addObserver(logged.append)

    def clear_text(port: int, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(data)
            return sock.recv(100)
    try:
        for port, data in ((http_port(node, "https"), b"GET /health HTTP/1.1\r\n\r\n"),
                           (http_port(node, "dot"), b"\x00\x1c" + bytes(28))):
            answer = await threads.deferToThread(clear_text, port, data)
            assert answer == b"" or answer[:1] == b"\x15"    # closed, or a TLS alert
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert not [event for event in logged if event.get("log_failure") is not None]
    # ... and the node still answers over TLS.
    name, _ = await publish_over_https(node, material)
    assert node.store.get(name, now=reactor.seconds())


@pytest_twisted.ensureDeferred
async def test_padded_queries_get_padded_answers_over_dot_only(tmp_path, material, nodes):
    from dnslib import EDNS0, EDNSOption
    from dmfdns.dns.padding import BLOCK
    node = nodes(tls_config(tmp_path, material))
    name, value = await publish_over_https(node, material)
    record = DNSRecord.question(name, "TXT")
    record.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(12, bytes(32))]))
    padded_query = record.pack()

    def both():
        answers, conn = dot_exchange(http_port(node, "dot"), [padded_query],
                                     client_context(material))
        conn.close()
        return answers[0], tcp_answer(dns_port(node), padded_query)
    over_dot, over_tcp = await threads.deferToThread(both)
    assert over_dot.wire_size % BLOCK == 0
    assert b"".join(over_dot.rr[0].rdata.data).decode() == value
    assert 12 in [option.code for rr in over_dot.ar if rr.rtype == QTYPE.OPT
                  for option in rr.rdata]
    assert 12 not in [option.code for rr in over_tcp.ar if rr.rtype == QTYPE.OPT
                      for option in rr.rdata]
