"""SIGHUP reload of a real ``dmfdns serve`` process under the systemd notification protocol:
a good new configuration is applied (zone serial and records, an identity setting) and
logged, a bad one changes nothing and the node keeps answering; READY=1, RELOADING=1,
WATCHDOG=1 and STOPPING=1 arrive on a real unix datagram socket. Before, SIGHUP killed the
node (exit 129).
"""

import signal
import socket
import subprocess
import sys
import time

import pytest
from dnslib import QTYPE, DNSRecord

from node_support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

ZONE = """$ORIGIN mesh.test.
$TTL 300
@ IN SOA ns1 hostmaster {serial} 3600 600 604800 60
@ IN NS ns1
ns1 IN A 127.0.0.1
{extra}"""


def write(tmp_path, port, *, serial, extra="", server_id="one"):
    (tmp_path / "mesh.test.zone").write_text(ZONE.format(serial=serial, extra=extra))
    config = tmp_path / "node.toml"
    config.write_text(f"""zones = ["mesh.test.zone"]
[node]
data_dir = "data"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:{port}"]
server_id = "{server_id}"
[http]
listen = []
""")
    return config


def ask(port, name, qtype, qclass="IN"):
    query = DNSRecord.question(name, qtype, qclass)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query.pack(), ("127.0.0.1", port))
        return DNSRecord.parse(sock.recv(4096))


def serial(port) -> int:
    (soa,) = [rr for rr in ask(port, "mesh.test", "SOA").rr if rr.rtype == QTYPE.SOA]
    return soa.rdata.times[0]


class Systemd:
    """The notification socket a service manager would listen on."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def until(self, wanted: str, timeout=20.0) -> list[str]:
        """Messages received until one holding ``wanted`` (that one included)."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            seen.append(message)
            if wanted in message.split("\n"):
                return seen
        raise AssertionError(f"no {wanted} in {seen}")


@pytest.fixture
def node(tmp_path):
    port = free_port()
    config = write(tmp_path, port, serial=3)
    systemd = Systemd(tmp_path / "notify")
    env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(tmp_path / "notify"),
           "WATCHDOG_USEC": "400000"}
    process = subprocess.Popen([sys.executable, "-m", "dmfdns", "serve", "--config",
                                str(config)], cwd=tmp_path, env=env, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yield process, port, systemd, tmp_path
    if process.poll() is None:
        process.kill()
    process.wait()
    systemd.sock.close()


def test_sighup_applies_a_good_config_and_keeps_the_old_one_when_the_new_is_bad(node,
                                                                                 figures):
    process, port, systemd, tmp_path = node
    assert "READY=1" in systemd.until("READY=1")[-1]
    assert serial(port) >= 3
    assert "WATCHDOG=1" in systemd.until("WATCHDOG=1")[-1]
    started = serial(port)

    write(tmp_path, port, serial=4, extra='added IN TXT "new record"\n', server_id="two")
    process.send_signal(signal.SIGHUP)
    messages = systemd.until("READY=1")
    assert any(m.startswith("RELOADING=1") for m in messages)
    assert serial(port) == started + 1
    assert ask(port, "added.mesh.test", "TXT").rr[0].rdata.data == [b"new record"]
    assert str(ask(port, "id.server", "TXT", "CH").rr[0].rdata) == '"two"'

    (tmp_path / "mesh.test.zone").write_text("$ORIGIN mesh.test.\n@ IN SOA broken\n")
    process.send_signal(signal.SIGHUP)
    messages = systemd.until("READY=1")
    assert "STATUS=reload refused" in messages[-1]
    assert serial(port) == started + 1                  # still the previous zone
    assert process.poll() is None

    process.send_signal(signal.SIGTERM)
    assert "STOPPING=1" in systemd.until("STOPPING=1")[-1]
    assert process.wait(15) == 0
    log = process.stderr.read()
    assert "reload: zone mesh.test reloaded (serial 4 -> 4)" not in log
    assert "reload: zone mesh.test reloaded (serial 3 -> 4)" in log
    assert "reload: [dns] server_id: 'one' -> 'two'" in log
    assert "reload refused, still running on the previous configuration" in log
    assert "Traceback" not in log
    figures(good_reload_applied=True, bad_reload_kept_serial=started + 1, exit_status=0)
