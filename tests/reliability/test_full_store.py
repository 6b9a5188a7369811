"""The full-store drain: a node whose LMDB map fills up refuses writes (507, one log line
each), keeps answering, accepts DELETE, and once the records expire its sweeper removes them
and writes are accepted again, with no larger map_size and no restart.

Before the reserve for removals, the sweeper failed every tick with a traceback, DELETE
answered 507 and only a bigger map helped.
"""

import dataclasses

import pytest
import pytest_twisted
from twisted.internet import task, threads
from twisted.logger import formatEvent, globalLogPublisher

from node_support import http_call, http_port, node_config, start_node

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]


@pytest.fixture
def small_node(tmp_path):
    config = node_config(tmp_path, tmp_path / "data")
    config = dataclasses.replace(config, store=dataclasses.replace(
        config.store, map_size=2**20, sweep_interval=3600.0))
    node = start_node(config)
    yield node
    pytest_twisted.blockon(node.stopService())


@pytest.fixture
def log_lines():
    lines = []

    def observer(event):
        if event.get("log_format"):
            lines.append(formatEvent(event))
    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def fill(port: int) -> tuple[int, int]:
    """POST 2 KB values (TTL 2 s) until one is refused: (accepted, refused status)."""
    for i in range(5000):
        status, _, _ = http_call(port, "POST", f"/v1/records/n{i}.mesh.test",
                                 {"value": f"{i:05d}" + "x" * 2000, "ttl": 2})
        if status != 201:
            return i, status
    return 5000, 201


@pytest_twisted.inlineCallbacks
def test_a_full_store_refuses_logs_and_drains_itself(small_node, log_lines, figures):
    port = http_port(small_node)
    accepted, status = yield threads.deferToThread(fill, port)
    assert status == 507 and accepted > 50
    refused = [line for line in log_lines if "refused with 507" in line]
    assert len(refused) == 1 and "store is full" in refused[0]
    status, _, _ = yield threads.deferToThread(http_call, port, "DELETE",
                                               f"/v1/records/n{accepted - 1}.mesh.test")
    assert status == 204                                   # DELETE works on a full store
    yield task.deferLater(small_node.reactor, 2.5, lambda: None)   # every value expires
    sweeper = small_node.sweeper
    for _ in range(200):           # sweeps commit in the commit thread: give it time
        sweeper.tick()
        yield task.deferLater(small_node.reactor, 0.05, lambda: None)
        if small_node.store.stats().values == 0:
            break
    assert small_node.store.stats().values == 0
    assert sweeper.removed >= accepted - 1
    status, _, _ = yield threads.deferToThread(
        http_call, port, "POST", "/v1/records/again.mesh.test", {"value": "v", "ttl": 60})
    assert status == 201
    figures(map_bytes=2**20, accepted_until_full=accepted, swept=sweeper.removed,
            sweep_failures=sweeper.failures, refused_logged=len(refused))
    assert not [line for line in log_lines if "Traceback" in line]
