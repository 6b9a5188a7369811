"""Issue 17 end to end, with real parts on loopback: dmfdns users who reach their node only
over HTTPS (the node terminating TLS, then a real nginx from Debian terminating it with
``trusted_proxies``); the certificate replaced on disk and picked up by SIGHUP while a
client keeps asking, with no failed request; Unbound forwarding the zone over TLS to the
node's DoT port; the reference ``dnsmesh`` 0.7.5 CLI registering and publishing over
HTTPS (its ``requests`` told to trust the test CA with REQUESTS_CA_BUNDLE).
"""

import http.client
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import pytest_twisted
from dnslib import QTYPE, DNSRecord
from twisted.internet import reactor, threads

from dmfdns.config import defaults_dir

from cluster_procs import pump
import unbound_support
from node_support import dns_port, free_port, http_port, node_config, start_node
from tls_support import make_material, serial

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    return make_material(tmp_path_factory.mktemp("tls"))


def _tls_http(material) -> dict:
    return {"tls_listen": ["127.0.0.1:0"], "tls_cert_file": str(material.good.cert),
            "tls_key_file": str(material.good.key)}


# --- the dmfdns CLI over HTTPS ----------------------------------------------------------

def _cli(home, *args, ca=None, stdin=None):
    env = dict(os.environ, DMFDNS_HOME=str(home), DMFDNS_PASSPHRASE="tls e2e passphrase")
    env.pop("DMFDNS_PASSPHRASE_FILE", None)
    env.pop("SSL_CERT_FILE", None)
    if ca is not None:
        env["SSL_CERT_FILE"] = str(ca)       # OpenSSL's own knob, as for curl
    return subprocess.run([sys.executable, "-m", "dmfdns", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=90)


async def _converse(tmp_path, https_url: str, dns: int, ca) -> None:
    """Alice and Bob, knowing only ``https_url`` (writes) and the DNS port (reads)."""
    node = f"--node={https_url},127.0.0.1:{dns}"
    alice, bob = tmp_path / "alice", tmp_path / "bob"

    async def cli(home, *args, code=0, **kw):
        result = await threads.deferToThread(_cli, home, *args, ca=ca, **kw)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == code, (args, result.stdout, result.stderr)
        return result
    for home, name in ((alice, "alice"), (bob, "bob")):
        await cli(home, "identity", "init", name, node)
        await cli(home, "identity", "publish")
    await cli(bob, "prekeys", "refresh", "--count", "2")
    await cli(alice, "identity", "fetch", "bob@mesh.test", "--add")
    await cli(bob, "contacts", "add", "alice@mesh.test")
    await cli(alice, "send", "bob@mesh.test", "-", stdin="hello over https\n")
    got = await cli(bob, "recv")
    assert "alice@mesh.test: hello over https" in got.stdout
    # Without the test CA the same user is refused, with the cause named, never a traceback.
    refused = await threads.deferToThread(_cli, alice, "send", "bob@mesh.test", "again")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "does not end at a trusted CA" in refused.stderr, refused.stderr


@pytest_twisted.ensureDeferred
async def test_users_converse_through_a_node_reached_only_over_https(tmp_path, material):
    node = start_node(node_config(tmp_path, tmp_path / "node", http=None,
                                  http_options=_tls_http(material)))
    try:
        assert not [l for l in node.listeners if l.kind == "http"]     # HTTPS only
        await _converse(tmp_path, f"https://127.0.0.1:{http_port(node, 'https')}",
                        dns_port(node), material.ca)
    finally:
        await node.stopService()


# --- behind nginx -------------------------------------------------------------------------

NGINX_CONF = """worker_processes 1;
daemon off;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name dmp.mesh.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


@pytest.fixture
def nginx_in_front(tmp_path, material):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not pathlib.Path(binary).exists():
        pytest.fail("nginx is not installed (bash .ci/run installs it)")
    # The node trusts nginx (127.0.0.1) to name the client; clients come from 127.0.0.5/6.
    node = start_node(node_config(
        tmp_path, tmp_path / "node", http_options={
            "trusted_proxies": ["127.0.0.1"], "rate_limit": 0.01, "rate_burst": 40}))
    work = tmp_path / "nginx"
    work.mkdir()
    port = free_port()
    (work / "nginx.conf").write_text(NGINX_CONF.format(
        dir=work, port=port, cert=material.good.cert, key=material.good.key,
        upstream=http_port(node)))
    process = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yield node, port, process
    process.send_signal(signal.SIGQUIT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stderr.close()
    pytest_twisted.blockon(node.stopService())


def _https_status(port: int, ca, source: str, path: str = "/v1/records/x.mesh.test") -> int:
    context = ssl.create_default_context(cafile=str(ca))
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT,
                                             context=context, source_address=(source, 0))
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def _wait_listening(port: int, process) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not listen")


@pytest_twisted.ensureDeferred
async def test_users_converse_through_nginx_terminating_tls(tmp_path, material,
                                                            nginx_in_front):
    node, port, process = nginx_in_front
    await threads.deferToThread(_wait_listening, port, process)
    await _converse(tmp_path, f"https://127.0.0.1:{port}", dns_port(node), material.ca)


@pytest_twisted.ensureDeferred
async def test_rate_limits_behind_nginx_see_the_real_client(tmp_path, material,
                                                            nginx_in_front):
    node, port, process = nginx_in_front
    await threads.deferToThread(_wait_listening, port, process)

    def exhaust(source: str) -> list[int]:
        return [_https_status(port, material.ca, source) for _ in range(45)]
    first = await threads.deferToThread(exhaust, "127.0.0.5")
    assert 429 in first and first[0] != 429          # past its burst, 127.0.0.5 is limited
    other = await threads.deferToThread(_https_status, port, material.ca, "127.0.0.6")
    assert other != 429                               # ... while 127.0.0.6 is not


# --- SIGHUP with a client asking all along ------------------------------------------------

def _node_process(tmp_path, material):
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    cert.write_bytes(material.good.cert.read_bytes())
    key.write_bytes(material.good.key.read_bytes())
    https = free_port()
    config = tmp_path / "node.toml"
    config.write_text(f"""zones = ["{defaults_dir() / 'mesh.test.zone'}"]
[node]
data_dir = "{tmp_path / 'data'}"
[dns]
listen = ["127.0.0.1:{free_port()}"]
[http]
listen = []
tls_listen = ["127.0.0.1:{https}"]
tls_cert_file = "{cert}"
tls_key_file = "{key}"
""")
    log = open(tmp_path / "node.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "dmfdns", "serve", "--config",
                                str(config)], stdout=log, stderr=log,
                               stdin=subprocess.DEVNULL)
    return process, https, cert, key


class Asker(threading.Thread):
    """GETs /health over HTTPS until stopped: a new connection each time, and one
    kept-alive connection; notes every failure and the certificate each new one saw."""

    def __init__(self, port: int, ca):
        super().__init__(daemon=True)
        self.port, self.context = port, ssl.create_default_context(cafile=str(ca))
        self.failures, self.serials, self.kept_alive = [], [], 0
        self.stop = threading.Event()

    def run(self):
        from cryptography import x509
        held = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=TIMEOUT,
                                           context=self.context)
        while not self.stop.is_set():
            try:
                fresh = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=TIMEOUT,
                                                    context=self.context)
                fresh.request("GET", "/health")
                assert fresh.getresponse().read() == b'{"status":"ok"}'
                der = fresh.sock.getpeercert(binary_form=True)
                self.serials.append(x509.load_der_x509_certificate(der).serial_number)
                fresh.close()
                held.request("GET", "/health")
                held_response = held.getresponse()
                assert held_response.status == 200 and held_response.read()
                self.kept_alive += 1
            except Exception as exc:            # every failure is the test's finding
                self.failures.append(repr(exc))
        held.close()


def test_a_certificate_replaced_on_disk_is_picked_up_by_sighup_without_a_failed_request(
        tmp_path, material):
    process, port, cert, key = _node_process(tmp_path, material)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "node.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "node did not listen"
                time.sleep(0.1)
        asker = Asker(port, material.ca)
        asker.start()
        time.sleep(1.0)
        # certbot's way: new files in place, then a deploy hook sends SIGHUP.
        cert.write_bytes(material.renewed.cert.read_bytes())
        key.write_bytes(material.renewed.key.read_bytes())
        process.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        asker.stop.set()
        asker.join(timeout=20)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert asker.failures == []
    old, new = serial(material.good.cert), serial(material.renewed.cert)
    assert asker.serials[0] == old and asker.serials[-1] == new
    assert set(asker.serials) == {old, new}
    assert asker.kept_alive == len(asker.serials)       # the held connection never dropped
    assert "https: certificate reloaded" in (tmp_path / "node.log").read_text()


# --- Unbound forwarding over TLS ----------------------------------------------------------



@pytest_twisted.ensureDeferred
async def test_unbound_resolves_a_slot_record_over_tls_to_the_dot_port(tmp_path, material):
    from dmfdns.proto import owners
    node = start_node(node_config(tmp_path, tmp_path / "node", http_options=_tls_http(material),
                                  dns_options={"tls_listen": ["127.0.0.1:0"]}))
    now = reactor.seconds()
    slot = owners.slot(3, bytes(range(32)), "mesh.test")
    node.store.put(slot, "v=dmp1;t=manifest;over-tls", expiry=now + 600, now=now)
    port = free_port()
    conf = unbound_support.write_config(
        tmp_path / "unbound", port, server=(f'tls-cert-bundle: "{material.ca}"',),
        stub=['name: "mesh.test"', f"stub-addr: 127.0.0.1@{http_port(node, 'dot')}#dmp.mesh.test",
              "stub-tls-upstream: yes"])
    process = unbound_support.start(conf, stderr=subprocess.PIPE)
    (dot_listener,) = [l for l in node.listeners if l.kind == "dot"]
    (udp_listener,) = [l for l in node.listeners if l.kind == "udp"]
    (tcp_listener,) = [l for l in node.listeners if l.kind == "tcp"]

    def resolve():
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = DNSRecord.parse(DNSRecord.question(slot, "TXT").send(
                    "127.0.0.1", port, timeout=3))
                if reply.rr:
                    return reply
            except OSError:
                pass
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "unbound gave no answer"
            time.sleep(0.2)
    try:
        reply = await threads.deferToThread(resolve)
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
        await node.stopService()
    assert reply.header.rcode == 0 and reply.rr[0].rtype == QTYPE.TXT
    assert b"".join(reply.rr[0].rdata.data) == b"v=dmp1;t=manifest;over-tls"
    assert dot_listener.counters.queries >= 1               # it came over TLS ...
    assert udp_listener.counters.queries == 0 and tcp_listener.counters.queries == 0


# --- the reference CLI over HTTPS ---------------------------------------------------------

class NameProxy(threading.Thread):
    """An HTTP CONNECT proxy on loopback that knows one name: ``dmp.mesh.test:443`` is
    tunnelled to the node's HTTPS port. It stands in for the DNS a real user's machine
    would ask; TLS (SNI, the certificate's name) stays end to end between the reference
    CLI and the node. Anything else is refused with 403."""

    def __init__(self, target_port: int):
        super().__init__(daemon=True)
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.tunnels = 0

    def run(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        request = b""
        while b"\r\n\r\n" not in request:
            data = client.recv(4096)
            if not data:
                client.close()
                return
            request += data
        if not request.startswith(b"CONNECT dmp.mesh.test:443 "):
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.tunnels += 1
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()

    def close(self):
        self.server.close()


def test_the_dnsmesh_cli_registers_and_publishes_over_https(tmp_path):
    from dnsmesh_support import ZONE, clean_environ, reference_bin, txt_values
    from public_node import PUBLIC, PublicNode
    from dmfdns.proto import owners
    binary = reference_bin()
    node = PublicNode(tmp_path / "node").start()
    proxy = NameProxy(node.https_port)
    proxy.start()
    home = tmp_path / "alice"
    env = clean_environ(DMP_CONFIG_HOME=home, DMP_TOKENS_HOME=home / "tokens",
                        DMP_PASSPHRASE="alice passphrase",
                        DMP_PROVIDER_DNS_PORT=node.dns_port,
                        REQUESTS_CA_BUNDLE=PUBLIC / "tls" / "ca.pem",
                        HTTPS_PROXY=f"http://127.0.0.1:{proxy.port}", NO_PROXY="")

    def run(*args):
        result = subprocess.run([str(binary), *args], env=env, capture_output=True,
                                text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result
    try:
        run("init", "alice", "--domain", ZONE, "--endpoint", "https://dmp.mesh.test",
            "--dns-host", "127.0.0.1", "--dns-port", str(node.dns_port),
            "--no-default-resolvers", "--no-probe-local-dns")
        registered = run("register", "--node", "dmp.mesh.test")
        assert "registered alice@mesh.test on dmp.mesh.test" in registered.stdout
        assert (home / "tokens" / "dmp.mesh.test.json").exists()
        run("identity", "publish")
        rcode, values = txt_values(node.dns_port, owners.identity_hashed("alice", ZONE))
        assert rcode == "NOERROR" and len(values) == 1
        assert proxy.tunnels >= 3           # challenge, confirm and publish went over HTTPS
        assert node.metric("dmfdns_http_requests_total",
                           {"handler": "records", "code": "201"}) >= 1
        # The same CLI without the test CA cannot register: the node is not trusted.
        env.pop("REQUESTS_CA_BUNDLE")
        env["DMP_CONFIG_HOME"] = str(tmp_path / "mallory")
        env["DMP_TOKENS_HOME"] = str(tmp_path / "mallory" / "tokens")
        run("init", "mallory", "--domain", ZONE, "--endpoint", "https://dmp.mesh.test",
            "--dns-host", "127.0.0.1", "--dns-port", str(node.dns_port),
            "--no-default-resolvers", "--no-probe-local-dns")
        result = subprocess.run([str(binary), "register", "--node", "dmp.mesh.test"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "CERTIFICATE_VERIFY_FAILED" in result.stdout + result.stderr
    finally:
        proxy.close()
        node.stop()
