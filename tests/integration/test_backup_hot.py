"""``dmfdns backup`` of a running node under concurrent HTTP writes: the backup process runs
beside the node (its own read-only handle, no lock), and a second node started on the copy
serves every record acknowledged before the backup began, over DNS."""

import json
import subprocess
import sys
import threading

import pytest
import pytest_twisted
from dnslib import QTYPE, DNSRecord
from twisted.internet import threads

from dmfdns.config import defaults_dir, load_config
from node_support import TIMEOUT, dns_port, http_call, http_port, start_node

pytestmark = pytest.mark.integration
BEFORE = 300          # records acknowledged before the backup starts


def write_config(path, data_dir) -> None:
    zone = (defaults_dir() / "mesh.test.zone").as_posix()
    path.write_text(f"zones = {json.dumps([zone])}\n[node]\n"
                    f"data_dir = {json.dumps(str(data_dir))}\n"
                    '[store]\nmap_size = "64MiB"\n[dns]\nlisten = ["127.0.0.1:0"]\n'
                    '[http]\nlisten = ["127.0.0.1:0"]\nrate_limit = 0\n')


def post(port, name, value) -> int:
    status, _, _ = http_call(port, "POST", f"/v1/records/{name}", {"value": value,
                                                                    "ttl": 3600})
    return status


def txt(port, name) -> list[str]:
    reply = DNSRecord.parse(DNSRecord.question(name, "TXT").send(
        "127.0.0.1", port, tcp=True, timeout=TIMEOUT))
    return [b"".join(rr.rdata.data).decode() for rr in reply.rr if rr.rtype == QTYPE.TXT]


class Writer(threading.Thread):
    """POSTs new records until stopped, keeping what was acknowledged."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.acked = port, threading.Event(), []

    def run(self):
        i = 0
        while not self.stop.is_set() and i < 5000:
            if post(self.port, f"during{i}.mesh.test", f"during {i}") == 201:
                self.acked.append(i)
            i += 1


@pytest_twisted.inlineCallbacks
def test_a_backup_under_concurrent_writes_serves_every_record_acknowledged_before(tmp_path):
    config_file = tmp_path / "node.toml"
    write_config(config_file, tmp_path / "data")
    node = start_node(load_config(config_file))
    copy_node = None
    try:
        port = http_port(node)
        for i in range(BEFORE):
            status = yield threads.deferToThread(post, port, f"before{i}.mesh.test",
                                                 f"value {i}")
            assert status == 201
        writer = Writer(port)
        writer.start()
        dest = tmp_path / "backup"
        done = yield threads.deferToThread(
            subprocess.run, [sys.executable, "-m", "dmfdns", "backup", str(dest),
                             "--config", str(config_file)],
            capture_output=True, text=True, timeout=60)
        writer.stop.set()
        yield threads.deferToThread(writer.join, 30)
        assert done.returncode == 0, done.stderr
        assert f"written to {dest}" in done.stdout
        assert writer.acked, "no write was acknowledged while the backup ran"
        copy_file = tmp_path / "copy.toml"
        write_config(copy_file, dest)
        copy_node = start_node(load_config(copy_file))
        port = dns_port(copy_node)
        for i in range(BEFORE):
            answer = yield threads.deferToThread(txt, port, f"before{i}.mesh.test")
            assert answer == [f"value {i}"]
        # The copy is one snapshot: the writes it holds are a prefix of the writer's.
        held = [i for i in range(len(writer.acked) + 1)
                if copy_node.store.get(f"during{i}.mesh.test", copy_node.reactor.seconds())]
        assert held == list(range(len(held)))
    finally:
        yield node.stopService()
        if copy_node is not None:
            yield copy_node.stopService()
