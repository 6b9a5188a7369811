"""Real ``dmfdns serve`` subprocesses on loopback for the cluster tests, and a fault proxy.

Every node gets free ports, its own data directory under ``tmp_path`` and a config with a
short sync interval. ``FaultProxy`` forwards one TCP link and can cut it (close what is open
and refuse what comes) and heal it, so a test partitions nodes without root or namespaces
(docs/decisions.md §6.6, "Partitions").
"""

import hashlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from dmfdns.proto.signing import Signer

from node_support import free_port

TOKEN = "cluster-test-token"
OPERATOR = Signer(hashlib.sha256(b"operator").digest())
ZONE_OPERATOR = Signer(hashlib.sha256(b"zone operator").digest())
ZONE = """$ORIGIN mesh.test.
$TTL 3600
@       IN SOA  ns1.mesh.test. hostmaster.mesh.test. 1 3600 600 604800 60
@       IN NS   ns1.mesh.test.
ns1     IN A    127.0.0.1
"""


def wait_serving(process, url: str, log: pathlib.Path, label: str, timeout: float = 20.0,
                 tail: int = 2000) -> None:
    """Poll ``url`` until it answers 200; AssertionError with the end of ``log`` if the
    process exits or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{label} exited: {log.read_text()[-tail:]}")
        try:
            if http_get(url, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{label} not ready: {log.read_text()[-tail:]}")


class NodeProc:
    def __init__(self, root: pathlib.Path, node_id: str, *, cluster: str):
        self.node_id = node_id
        self.dir = root / node_id
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "mesh.test.zone").write_text(ZONE)
        self.dns_port, self.http_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.cluster = cluster
        self.process = None
        self.log = self.dir / "node.log"

    def write_config(self, extra: str = "") -> pathlib.Path:
        path = self.dir / "node.toml"
        path.write_text(f"""zones = ["mesh.test.zone"]
[node]
node_id = "{self.node_id}"
data_dir = "data"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:{self.dns_port}"]
[http]
listen = ["127.0.0.1:{self.http_port}"]
rate_limit = 0.0
[cluster]
sync_token = "{TOKEN}"
sync_interval = "0.5s"
fullset_interval = "3s"
peer_timeout = "2s"
tick_budget = "3s"
{self.cluster}
{extra}
""")
        return path

    def start(self, argv=None) -> None:
        argv = argv or ["serve", "--config", "node.toml"]
        log = open(self.log, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "dmfdns", *argv],
                                        cwd=self.dir, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log)

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_serving(self.process, self.url + "/readyz", self.log, self.node_id, timeout)

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=15)

    def post(self, name: str, value: str, ttl: int = 3600) -> int:
        body = json.dumps({"value": value, "ttl": ttl}).encode()
        request = urllib.request.Request(f"{self.url}/v1/records/{name}", data=body,
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status

    def delete(self, name: str, value: str) -> int:
        body = json.dumps({"value": value}).encode()
        request = urllib.request.Request(f"{self.url}/v1/records/{name}", data=body,
                                         method="DELETE")
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status

    def digest_entries(self) -> list:
        """Every live (name, hash) the node serves to a reference peer, in log order."""
        entries, cursor = [], "0::"
        while True:
            status, data = http_get(f"{self.url}/v1/sync/digest?cursor={cursor}&limit=10000",
                                    token=TOKEN)
            assert status == 200
            body = json.loads(data)
            entries += [(e["name"], e["hash"]) for e in body["records"]]
            if not body["has_more"]:
                return entries
            cursor = body["next_cursor"]

    def record_set(self) -> set:
        return set(self.digest_entries())

    def metric(self, name: str, **labels) -> float:
        """A sample from /metrics (labels in the family's order), 0 when absent."""
        _, data = http_get(self.url + "/metrics")
        key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
                      if labels else "")
        for line in data.decode().splitlines():
            if line.startswith(key + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def http_get(url: str, *, token: str | None = None, timeout: float = 5.0):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until(predicate, timeout: float, step: float = 0.25):
    """Seconds it took for ``predicate()`` to hold; AssertionError after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


def pump(source, sink) -> None:
    """Copy ``source`` to ``sink`` until either side closes, then shut both down."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target`` until cut."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.is_cut = False
        self.open = set()
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.is_cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    def cut(self):
        self.is_cut = True
        with self.lock:
            for sock in self.open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass
            self.open.clear()

    def heal(self):
        self.is_cut = False

    def close(self):
        self.stopped = True
        self.cut()
        self.server.close()
