"""The reference ``dnsmesh`` 0.7.5 (its CLI and its node) driven from tests, beside dmfdns
nodes that run as ``dmfdns serve`` subprocesses (``cluster_procs.NodeProc``).

The reference lives in its own virtualenv (AGPL, never imported into dmfdns): ``.ci/run``
creates it and exports ``DMFDNS_DNSMESH_BIN``; locally
``DMFDNS_DNSMESH_BIN=/tmp/dnsmesh-venv/bin/dnsmesh``. Tests that need it **fail** when it is
missing (``reference_bin``), they never skip. Everything binds and talks to 127.0.0.1 only.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import urllib.error
import urllib.request

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from cluster_procs import http_get, wait_serving
from node_support import free_port

ZONE = "mesh.test"
BIN_VARIABLE = "DMFDNS_DNSMESH_BIN"


def reference_bin() -> pathlib.Path:
    """The ``dnsmesh`` executable named by ``DMFDNS_DNSMESH_BIN``; ``pytest.fail`` otherwise."""
    path = os.environ.get(BIN_VARIABLE)
    if not path:
        pytest.fail(f"{BIN_VARIABLE} is not set; .ci/run creates the dnsmesh venv and sets it "
                    f"(locally: {BIN_VARIABLE}=/tmp/dnsmesh-venv/bin/dnsmesh)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{BIN_VARIABLE}={path} is not an executable dnsmesh")
    return pathlib.Path(path)


def reference_python() -> pathlib.Path:
    """The reference venv's interpreter (the node's entry point is ``python -m dmp.server``)."""
    python = reference_bin().parent / "python"
    if not os.access(python, os.X_OK):
        pytest.fail(f"no python next to {reference_bin()}: not a virtualenv")
    return python


def clean_environ(**extra) -> dict:
    """This process's environment without any ``DMP_*`` variable, plus ``extra``: a reference
    process must see only the settings a test chose."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


# --- DNS from outside ----------------------------------------------------------------------

def txt_values(port: int, name: str, *, timeout: float = 3.0) -> tuple[str, list[str]]:
    """(rcode name, TXT values) for ``name`` asked over TCP at 127.0.0.1:``port``; each
    value is its character-strings joined, as every DMP reader does."""
    query = DNSRecord.question(name, "TXT")
    reply = DNSRecord.parse(query.send("127.0.0.1", port, tcp=True, timeout=timeout))
    values = [b"".join(rr.rdata.data).decode("utf-8", "replace")
              for rr in reply.rr if rr.rtype == QTYPE.TXT]
    return RCODE.get(reply.header.get_rcode()), values


# --- the reference node ----------------------------------------------------------------------

class ReferenceNode:
    """``python -m dmp.server`` from the reference venv, configured only by environment
    variables (docs/compatibility.md §6): its SQLite file under ``root``, DNS and HTTP on free
    loopback ports, open write mode, no heartbeat, the given sync peers and token, and
    ``extra_env`` on top. Without peers it reads them from ``cluster_file`` (absent unless
    a test writes it)."""

    def __init__(self, root: pathlib.Path, *, sync_token: str, peers=(),
                 sync_interval: float = 1.0, extra_env=None):
        self.dir = root / "dnsmesh-node"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dns_port, self.http_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.sync_token = sync_token
        self.peers = list(peers)
        self.sync_interval = sync_interval
        self.extra_env = dict(extra_env or {})
        self.log = self.dir / "node.log"
        self.cluster_file = self.dir / "cluster.json"
        self.process = None

    def environ(self) -> dict:
        settings = dict(
            DMP_DB_PATH=self.dir / "dmp.db",
            DMP_CLUSTER_FILE=self.cluster_file,
            DMP_DNS_HOST="127.0.0.1", DMP_DNS_PORT=self.dns_port,
            DMP_HTTP_HOST="127.0.0.1", DMP_HTTP_PORT=self.http_port,
            DMP_SERVED_ZONE=ZONE, DMP_AUTH_MODE="open",
            DMP_SYNC_PEERS=",".join(self.peers), DMP_SYNC_PEER_TOKEN=self.sync_token,
            DMP_SYNC_INTERVAL=self.sync_interval,
            DMP_HTTP_RATE=10000, DMP_HTTP_BURST=100000,
            DMP_DNS_RATE=10000, DMP_DNS_BURST=100000,
            DMP_HEARTBEAT_PUBLIC_SEED_URLS_DISABLED=1, DMP_LOG_LEVEL="INFO")
        settings.update(self.extra_env)
        return clean_environ(**settings)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([str(reference_python()), "-m", "dmp.server"],
                                            cwd=self.dir, env=self.environ(),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_serving(self.process, self.url + "/health", self.log, "dnsmesh node", timeout,
                     tail=3000)

    def kill(self, sig=signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


# --- HTTP records API, the same calls against either node ---------------------------------

def post_record(base_url: str, name: str, value: str, ttl: int = 3600) -> int:
    body = json.dumps({"value": value, "ttl": ttl}).encode()
    request = urllib.request.Request(f"{base_url}/v1/records/{name}", data=body,
                                     method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        raise AssertionError(f"POST {name} -> {error.code} {error.read()!r}") from None


def get_values(base_url: str, name: str) -> set[str]:
    """The values ``GET /v1/records/{name}`` lists (empty on 404)."""
    status, data = http_get(f"{base_url}/v1/records/{name}")
    if status == 404:
        return set()
    assert status == 200, (name, status, data)
    return set(json.loads(data)["values"])


# --- the reference CLI ---------------------------------------------------------------------

class DnsmeshUser:
    """One ``dnsmesh`` identity with its own ``DMP_CONFIG_HOME`` (docs/compatibility.md §7),
    pointed only at one node: reads over DNS at its port, writes to its HTTP API, and the
    claim provider set to the same node so nothing falls back to a public one."""

    def __init__(self, home: pathlib.Path, username: str, *, dns_port: int, http_port: int):
        self.home, self.username = home, username
        self.dns_port, self.http_port = dns_port, http_port
        self.env = clean_environ(DMP_CONFIG_HOME=home, DMP_PASSPHRASE=f"{username} passphrase",
                                 DMP_PROVIDER_DNS_PORT=dns_port)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(reference_bin()), *args], env=self.env,
                                capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def init(self) -> None:
        self.run("init", self.username, "--domain", ZONE,
                 "--endpoint", f"http://127.0.0.1:{self.http_port}",
                 "--dns-host", "127.0.0.1", "--dns-port", str(self.dns_port),
                 "--no-default-resolvers", "--no-probe-local-dns")
        config = self.home / "config.yaml"
        text = config.read_text()
        for key, value in (("claim_provider_override", f"http://127.0.0.1:{self.http_port}"),
                           ("claim_provider_zone", ZONE)):
            text, count = re.subn(rf"^{key}: .*$", f"{key}: {value}", text, flags=re.M)
            assert count == 1, f"{key} not in {config}"
        config.write_text(text)

    def config_value(self, key: str) -> str:
        match = re.search(rf"^{key}: *(.*)$", (self.home / "config.yaml").read_text(), re.M)
        assert match, key
        return match.group(1).strip().strip("'\"")


def printed_messages(out: str) -> list[str]:
    """The texts ``dnsmesh recv`` printed: ``from <spk16>...``, ``  ts=N``, ``  <text>`` and
    a blank line per message."""
    return re.findall(r"^from [0-9a-f]{16}\.\.\.\n  ts=\d+\n  (.*?)\n\n"
                      r"(?=from [0-9a-f]{16}\.\.\.\n|\Z|[^\n]*intro)", out, flags=re.M | re.S)
