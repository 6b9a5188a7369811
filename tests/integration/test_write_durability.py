"""kill -9 of a real ``dmfdns serve`` under concurrent HTTP writers: every write answered
201 is in the store afterwards (group commit acknowledges only durable writes), and the
writers' requests did share commits."""

import http.client
import json
import signal
import threading
import time
import urllib.request

import pytest

from dmfdns.store.lmdb_store import LmdbStore

from cluster_procs import NodeProc

pytestmark = pytest.mark.integration
WRITERS = 8
ENOUGH = 600
T_LIMIT = 30.0


def write_until(node: NodeProc, writer: int, stop: threading.Event, acked: list) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
    i = 0
    try:
        while not stop.is_set():
            name = f"w{writer}-{i}.mesh.test"
            connection.request("POST", f"/v1/records/{name}",
                               body=json.dumps({"value": f"value {writer} {i}", "ttl": 3600}))
            reply = connection.getresponse()
            reply.read()
            if reply.status == 201:
                acked.append((name, f"value {writer} {i}"))
            i += 1
    except (OSError, http.client.HTTPException):
        pass                      # the node was killed under this request
    finally:
        connection.close()


def test_every_acknowledged_write_survives_kill_9_under_concurrent_writers(tmp_path):
    node = NodeProc(tmp_path, "n1", cluster="")
    node.write_config()
    node.start()
    try:
        node.wait_ready()
        stop, acked = threading.Event(), []
        writers = [threading.Thread(target=write_until, args=(node, w, stop, acked))
                   for w in range(WRITERS)]
        for thread in writers:
            thread.start()
        deadline = time.monotonic() + T_LIMIT
        while len(acked) < ENOUGH and time.monotonic() < deadline:
            time.sleep(0.05)
        text = scrape(node)
        commits = metric(text, "dmfdns_store_commits_total")
        writes = metric(text, "dmfdns_store_committed_writes_total")
        node.kill(signal.SIGKILL)          # writers are mid-request
        stop.set()
        for thread in writers:
            thread.join(timeout=15)
    finally:
        node.kill(signal.SIGKILL)
    assert len(acked) >= ENOUGH
    assert writes > commits > 0            # writes shared commits
    store = LmdbStore(node.dir / "data", map_size=64 * 2**20, node_id="check")
    try:
        now = time.time()
        lost = [(name, value) for name, value in acked
                if value not in [v.value for v in store.get(name, now)]]
    finally:
        store.close()
    assert lost == []


def scrape(node: NodeProc) -> str:
    with urllib.request.urlopen(f"{node.url}/metrics", timeout=10) as page:
        return page.read().decode()


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))
