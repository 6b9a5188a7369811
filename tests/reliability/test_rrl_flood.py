"""Response-rate limiting against a one-source reflection flood, on a real node process.

One source (127.0.1.2) floods the TXT query of a ~1,100-byte answer at 20,000 queries per
second for 10 s while another (127.0.0.1, another /24) asks the same name at 50 queries
per second. The node runs ``dmfdns serve`` with the RRL settings of
``node/public/node.toml``. The flood must get back at most twice the bytes it sent, part of
it as truncated slips; the other source must get at least 99 % of its answers; and the
flood source must get full answers again within 2 s of stopping.
"""

import json
import pathlib
import select
import socket
import subprocess
import sys
import time
import tomllib

import pytest
from dnslib import EDNS0, DNSRecord

from dmfdns.config import defaults_dir
from dmfdns.store.lmdb_store import LmdbStore
from node_support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOAD = ROOT / "tests" / "udp_load.py"
BIG = "big.mesh.test"
FLOOD_RATE, FLOOD_SECONDS, HONEST_RATE = 20_000, 10, 50


def public_rrl() -> dict:
    dns = tomllib.loads((ROOT / "node/public/node.toml").read_text())["dns"]
    return {key: value for key, value in dns.items() if key.startswith("rrl_")}


def start_node(tmp_path, port: int, rrl: dict):
    data = tmp_path / "data"
    store = LmdbStore(data, map_size=64 * 2**20)
    now = time.time()
    store.put_many([(BIG, f"{i}" + "x" * 250, now + 3600) for i in range(4)], now=now)
    store.close()
    config = tmp_path / "node.toml"
    keys = "\n".join(f"{key} = {json.dumps(value)}" for key, value in rrl.items())
    config.write_text(f"""zones = [{json.dumps(str(defaults_dir() / "mesh.test.zone"))}]
[node]
data_dir = {json.dumps(str(data))}
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:{port}"]
{keys}
[http]
listen = []
""")
    log = open(tmp_path / "node.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "dmfdns", "serve", "--config",
                                str(config)], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT)
    return process


def query(qid: int, payload: int) -> bytes:
    wire = DNSRecord.question(BIG, "TXT")
    wire.header.id = qid
    wire.add_ar(EDNS0(udp_len=payload))         # as resolvers ask (DNS Flag Day 2020)
    return bytes(wire.pack())


def ask(sock, qid: int, timeout: float) -> bytes | None:
    sock.send(query(qid, 1232))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            try:
                response = sock.recv(65535)
            except ConnectionRefusedError:      # not listening yet
                return None
            if response[:2] == qid.to_bytes(2, "big"):
                return response
    return None


def wait_answering(port: int, process, tmp_path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        for qid in range(200):
            if process.poll() is not None:
                raise AssertionError((tmp_path / "node.log").read_text()[-2000:])
            if ask(sock, qid, 0.2) is not None:
                return
            time.sleep(0.05)
    raise AssertionError("the node did not answer")


def honest_client(port: int, seconds: float, timeout: float = 2.0) -> tuple[int, int, float]:
    """Ask at HONEST_RATE from 127.0.0.1 for ``seconds``, each query on its own schedule
    whatever the earlier ones got: (asked, answered in full within ``timeout``, the
    slowest answer in seconds)."""
    sent, answered, slowest = {}, 0, 0.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.connect(("127.0.0.1", port))
        start = time.monotonic()
        end = start + seconds + timeout
        while (now := time.monotonic()) < end:
            if now < start + seconds and len(sent) <= (now - start) * HONEST_RATE:
                qid = len(sent) + 1
                sent[qid] = now
                sock.send(query(qid, 1232))
            ready, _, _ = select.select([sock], [], [], 0.002)
            if ready:
                response = sock.recv(65535)
                qid = int.from_bytes(response[:2], "big")
                took = time.monotonic() - sent.get(qid, 0.0)
                if qid in sent and took <= timeout and DNSRecord.parse(response).rr:
                    answered += 1
                    slowest = max(slowest, took)
    return len(sent), answered, slowest


def test_a_one_source_flood_is_limited_and_others_keep_their_answers(tmp_path):
    rrl = public_rrl()
    assert rrl.get("rrl_rate", 0) > 0, "node/public/node.toml must turn RRL on"
    port = free_port()
    node = start_node(tmp_path, port, rrl)
    try:
        wait_answering(port, node, tmp_path)
        flooder = subprocess.Popen(
            [sys.executable, str(LOAD), "flood", "127.0.1.2", str(port), BIG,
             str(FLOOD_RATE), str(FLOOD_SECONDS), "3"], stdout=subprocess.PIPE)
        asked, answered, slowest = honest_client(port, FLOOD_SECONDS)
        out, _ = flooder.communicate(timeout=60)
        flood = json.loads(out)
    finally:
        node.terminate()
        node.wait(timeout=15)
    print(flood, asked, answered, slowest)
    assert flood["rate"] >= FLOOD_RATE * 0.98 and flood["sent"] >= 0.98 * FLOOD_RATE * 10
    assert flood["received_bytes"] / flood["sent_bytes"] <= 2.0, flood
    assert flood["truncated"] > 0 and flood["full"] > 0, flood
    assert asked >= FLOOD_SECONDS * HONEST_RATE * 0.98
    assert answered >= 0.99 * asked, (asked, answered)
    assert flood["recovered_after"] is not None and flood["recovered_after"] <= 2.0, flood
