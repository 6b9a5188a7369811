"""kill -9 under concurrent writes: a ``dmfdns serve`` process takes HTTP writes from two
clients and is killed with SIGKILL at a random moment, again and again; every write it
acknowledged (201) must be in the store afterwards. A 201 is sent only after the LMDB
commit is durable, so a process crash may lose only writes not yet acknowledged.

CI runs 3 cycles; ``tools/reliability`` 50.
"""

import http.client
import json
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from attacks import wait_answering
from conftest import scaled
from node_support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

CYCLES = scaled(3, 50)
WRITERS = 2


def write_config(tmp_path, dns: int, http: int):
    path = tmp_path / "node.toml"
    path.write_text(f"""zones = ["{tmp_path / 'mesh.test.zone'}"]
[node]
data_dir = "{tmp_path / 'data'}"
[store]
map_size = "256MiB"
[dns]
listen = ["127.0.0.1:{dns}"]
[http]
listen = ["127.0.0.1:{http}"]
rate_limit = 0
""")
    (tmp_path / "mesh.test.zone").write_text(
        "$ORIGIN mesh.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 604800 60\n"
        "@ IN NS ns1\nns1 IN A 127.0.0.1\n")
    return path


def writer(port: int, prefix: str, acknowledged: list, stop: threading.Event) -> None:
    """POST new names until the node dies or ``stop``; keep the ones answered 201."""
    index = 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    while not stop.is_set():
        name = f"{prefix}-{index}.mesh.test"
        try:
            connection.request("POST", f"/v1/records/{name}",
                               body=json.dumps({"value": "v", "ttl": 86400}))
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            return
        if response.status == 201:
            acknowledged.append(name)
        index += 1


def one_cycle(config, dns: int, http_port: int, cycle: int, rng, acknowledged) -> None:
    process = subprocess.Popen([sys.executable, "-m", "dmfdns", "serve", "--config",
                                str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_answering(dns, process)
        stop = threading.Event()
        threads = [threading.Thread(target=writer, args=(http_port, f"c{cycle}w{n}",
                                                        acknowledged, stop))
                   for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.3, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        stop.set()
        for thread in threads:
            thread.join(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stored_names(config) -> set:
    listed = subprocess.run([sys.executable, "-m", "dmfdns", "records", "list", "--config",
                             str(config)], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    return {line.split("\t", 1)[0] for line in listed.stdout.splitlines()}


def test_every_acknowledged_write_survives_kill_9_cycles(tmp_path, figures):
    dns, http_port = free_port(), free_port()
    config = write_config(tmp_path, dns, http_port)
    rng, acknowledged = random.Random(9), []
    started = time.monotonic()
    for cycle in range(CYCLES):
        one_cycle(config, dns, http_port, cycle, rng, acknowledged)
    lost = set(acknowledged) - stored_names(config)
    figures(cycles=CYCLES, acknowledged=len(acknowledged), lost=len(lost),
            seconds=round(time.monotonic() - started, 1))
    assert len(acknowledged) > 10 * CYCLES
    assert lost == set()
