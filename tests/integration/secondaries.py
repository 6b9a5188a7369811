"""A dmfdns hidden primary and real Debian secondaries (NSD, Knot, BIND) as subprocesses on
loopback, each with its own configuration in a temporary directory.

The primary allows transfers from 127.0.0.1 with one TSIG key and NOTIFYs both
secondaries; the secondaries transfer with that key and accept NOTIFY signed with it.
The same NSD and Knot configurations are shown in docs/operator-guide.md.
"""

import base64
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import urllib.request

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig

from node_support import free_port

from cluster_procs import wait_serving

ZONE = "mesh.test"
KEY_NAME = "xfr-key"
SECRET = base64.b64encode(bytes(range(32))).decode()
ZONE_FILE = """$ORIGIN mesh.test.
$TTL 3600
@       IN SOA  ns1.mesh.test. hostmaster.mesh.test. 1 3600 600 604800 60
@       IN NS   ns1.mesh.test.
ns1     IN A    127.0.0.1
"""


def tsig_key(secret: str = SECRET, name: str = KEY_NAME) -> dns.tsig.Key:
    return dns.tsig.Key(name, secret, "hmac-sha256")


class Proc:
    """One subprocess with its log; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, directory: pathlib.Path, label: str):
        self.dir, self.label = directory, label
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / f"{label}.log"
        self.process = None

    def spawn(self, argv, cwd=None) -> None:
        out = open(self.log, "ab")
        self.process = subprocess.Popen(argv, cwd=cwd or self.dir, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=out)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""


class Primary(Proc):
    def __init__(self, directory: pathlib.Path, notify_ports, *, extra_zone: str = ""):
        super().__init__(directory, "dmfdns")
        self.dns_port, self.http_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        (self.dir / "mesh.test.zone").write_text(ZONE_FILE)
        (self.dir / "xfr.tsig").write_text(f"hmac-sha256:{KEY_NAME}:{SECRET}\n")
        notify = json.dumps([f"127.0.0.1:{port}" for port in notify_ports])
        (self.dir / "node.toml").write_text(f"""[node]
data_dir = "data"
[store]
map_size = "256MiB"
sweep_interval = "0.5s"
[dns]
listen = ["127.0.0.1:{self.dns_port}"]
[http]
listen = ["127.0.0.1:{self.http_port}"]
rate_limit = 0.0
[[zones]]
file = "mesh.test.zone"
transfer_allow = ["127.0.0.1/32"]
tsig_key_file = "xfr.tsig"
notify = {notify}
{extra_zone}
""")

    def start(self) -> None:
        self.spawn([sys.executable, "-m", "dmfdns", "serve", "--config", "node.toml"])
        wait_serving(self.process, self.url + "/readyz", self.log, "dmfdns primary")

    def post(self, name: str, value: str, ttl: int = 3600) -> None:
        self._call("POST", name, {"value": value, "ttl": ttl})

    def delete(self, name: str, value: str) -> None:
        self._call("DELETE", name, {"value": value})

    def _call(self, method, name, body) -> None:
        request = urllib.request.Request(f"{self.url}/v1/records/{name}", method=method,
                                         data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 201, 204), response.status

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
            return response.read().decode()


NSD_CONF = """server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{dir}"
    database: ""
    zonelistfile: "{dir}/zone.list"
    xfrdfile: "{dir}/xfrd.state"
    xfrdir: "{dir}"
    pidfile: "{dir}/nsd.pid"
    logfile: "{dir}/nsd.log"
    server-count: 1
    verbosity: 2
    xfrd-reload-timeout: 1
remote-control:
    control-enable: no
key:
    name: "{key_name}"
    algorithm: hmac-sha256
    secret: "{secret}"
zone:
    name: "{zone}"
    zonefile: "{dir}/{zone}.zone"
    allow-notify: 127.0.0.1 {key_name}
    request-xfr: 127.0.0.1@{primary} {key_name}
"""

KNOT_CONF = """server:
    rundir: "{dir}"
    pidfile: "{dir}/knot.pid"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: "{dir}/db"
key:
  - id: {key_name}
    algorithm: hmac-sha256
    secret: {secret}
remote:
  - id: primary
    address: 127.0.0.1@{primary}
    key: {key_name}
acl:
  - id: notify-from-primary
    address: 127.0.0.1
    key: {key_name}
    action: notify
zone:
  - domain: {zone}.
    storage: "{dir}"
    file: "{zone}.zone"
    master: primary
    acl: notify-from-primary
    zonefile-sync: -1
"""


BIND_CONF = """options {{
    directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    recursion no;
    notify no;
    dnssec-validation no;
}};
controls {{ }};
logging {{
    channel file_log {{ file "{dir}/named.log"; severity info; print-time yes; }};
    category default {{ file_log; }};
}};
key "{key_name}" {{
    algorithm hmac-sha256;
    secret "{secret}";
}};
zone "{zone}" {{
    type secondary;
    primaries port {primary} {{ 127.0.0.1 key {key_name}; }};
    file "{dir}/{zone}.db";
    allow-notify {{ key {key_name}; }};
}};
"""
SERVERS = {"nsd": ("nsd", NSD_CONF, ["-d", "-c"]), "knot": ("knotd", KNOT_CONF, ["-c"]),
           "bind": ("named", BIND_CONF, ["-f", "-c"])}


class Secondary(Proc):
    """NSD, Knot or BIND as a secondary of the primary at ``primary_port``."""

    def __init__(self, directory: pathlib.Path, kind: str, port: int):
        super().__init__(directory, kind)
        self.kind, self.port = kind, port

    def start(self, primary_port: int) -> None:
        program, template, flags = SERVERS[self.kind]
        path = self.dir / f"{self.kind}.conf"
        (self.dir / "db").mkdir(exist_ok=True)
        path.write_text(template.format(port=self.port, dir=self.dir, key_name=KEY_NAME,
                                        secret=SECRET, zone=ZONE, primary=primary_port))
        self.spawn([server_path(self.kind), *flags, str(path)])

    def tail(self, size: int = 3000) -> str:
        text = super().tail(size)
        for log in ("nsd.log", "named.log"):
            if (self.dir / log).exists():
                text += (self.dir / log).read_text(errors="replace")[-size:]
        return text


def server_path(kind: str) -> str | None:
    """Where the Debian package put ``kind``'s server (``/usr/sbin`` may be off PATH)."""
    program = SERVERS[kind][0]
    found = shutil.which(program) or f"/usr/sbin/{program}"
    return found if os.access(found, os.X_OK) else None


def query(port: int, name: str, rdtype: str, *, tcp: bool = False):
    """One query to 127.0.0.1:``port``; None when it times out or fails."""
    request = dns.message.make_query(name, rdtype)
    try:
        if tcp:
            return dns.query.tcp(request, "127.0.0.1", port=port, timeout=2)
        return dns.query.udp(request, "127.0.0.1", port=port, timeout=2)
    except (OSError, dns.exception.DNSException):
        return None


def serial(port: int) -> int | None:
    answer = query(port, ZONE, "SOA")
    if answer is None or answer.rcode() != dns.rcode.NOERROR or not answer.answer:
        return None
    return answer.answer[0][0].serial


def txt_set(port: int, name: str):
    """The TXT values of ``name`` (a frozenset of joined strings), None when NXDOMAIN or
    no answer at all."""
    answer = query(port, name, "TXT", tcp=True)
    if answer is None:
        return "no answer"
    if answer.rcode() == dns.rcode.NXDOMAIN:
        return None
    found = set()
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            found.update(b"".join(r.strings).decode() for r in rrset)
    return frozenset(found)


def free_ports(count: int) -> list:
    ports = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


