"""``dmfdns status`` against a running node: ``GET /v1/status`` answered on loopback or with
the operator token, and the CLI's rendering of it."""

import io
import json

import pytest
import pytest_twisted
from twisted.internet import threads

from dmfdns.cli import run
from dmfdns.commands.status import render
from dmfdns.http.endpoint import HttpError
from dmfdns.node_status import _loopback_or_operator

from node_support import http_call, http_port, node_config, start_node

NOW = 1_800_000_000.0


@pytest.fixture
def node(tmp_path):
    (tmp_path / "operator.token").write_text("op-token\n")
    config = node_config(tmp_path, tmp_path / "data", node_id="status-node",
                         http_options={"auth_mode": "legacy",
                                       "operator_token_file": str(tmp_path / "operator.token")})
    started = start_node(config)
    yield started
    pytest_twisted.blockon(started.stopService())


def written_config(tmp_path, node) -> str:
    path = tmp_path / "status.toml"
    path.write_text(f'[http]\nlisten = ["127.0.0.1:{http_port(node)}"]\n'
                    f'auth_mode = "legacy"\noperator_token_file = "operator.token"\n')
    return str(path)


@pytest_twisted.inlineCallbacks
def test_status_reports_zones_serials_store_listeners_and_peers(node, tmp_path):
    node.store.put("a.mesh.test", "v", expiry=NOW + 3600, now=NOW)
    status, _, body = yield threads.deferToThread(http_call, http_port(node), "GET",
                                                  "/v1/status")
    assert status == 200
    doc = json.loads(body)
    assert doc["node"]["id"] == "status-node" and doc["node"]["ready"] is True
    (zone,) = doc["zones"]
    assert zone["origin"] == "mesh.test"
    assert zone["serial"] == zone["file_serial"] + node.store.generation()
    assert doc["store"]["values"] == 1 and doc["store"]["map_size_bytes"] == 64 * 2**20
    kinds = {listener["kind"] for listener in doc["listeners"]}
    assert {"udp", "tcp", "http"} <= kinds
    assert all(":0" not in listener["address"] for listener in doc["listeners"])
    assert doc["peers"] == []


@pytest_twisted.inlineCallbacks
def test_the_cli_prints_the_status_of_the_node_its_config_names(node, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = yield threads.deferToThread(
        run, ["status", "--config", written_config(tmp_path, node)], now=NOW, stdout=out,
        stderr=err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert text.startswith("node status-node (dmfdns ") and "ready" in text
    assert "  mesh.test: serial " in text and "peers: none" in text


def test_a_node_that_does_not_answer_is_one_line_and_exit_1(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[http]\nlisten = ["127.0.0.1:9"]\n')
    err = io.StringIO()
    assert run(["status", "--config", str(path)], now=NOW, stdout=io.StringIO(),
               stderr=err) == 1
    assert err.getvalue().startswith("dmfdns: no node answers on 127.0.0.1:9")


def test_render_shows_a_failing_peer_with_its_error():
    doc = {"node": {"id": "n1", "version": "0.1.0", "ready": True, "uptime_seconds": 5.0},
           "store": {"names": 1, "values": 2, "tombstones": 0, "map_used_bytes": 50,
                     "map_size_bytes": 100, "generation": 3},
           "zones": [], "listeners": [],
           "peers": [{"id": "n2", "url": "http://127.0.0.1:1", "lag_seconds": 12.0,
                      "caught_up": False, "last_success_ago_seconds": None,
                      "failing": True, "last_error": "refused", "pulled": 0, "applied": 0}]}
    lines = render(doc)
    assert "map 50 of 100 bytes (50%)" in lines[1]
    assert lines[-1] == ("  n2 http://127.0.0.1:1: lag 12.0 s, last success None s ago, "
                         "FAILING (refused)")


class Request:
    def __init__(self, host):
        self.host = host

    def getClientAddress(self):
        return self


class FakeCall:
    """What the status endpoint's access check reads of a request."""

    def __init__(self, host, token=None):
        self.request = Request(host)
        self.token = token

    def header(self, name):
        return f"Bearer {self.token}" if self.token else None


def test_a_non_loopback_client_needs_the_operator_token(node):
    """The TCP peer decides (a proxy's X-Forwarded-For does not), or the operator token."""
    assert _loopback_or_operator(node, FakeCall("127.0.0.1")) is None
    assert _loopback_or_operator(node, FakeCall("::1")) is None
    assert _loopback_or_operator(node, FakeCall("192.0.2.7", "op-token")) is None
    with pytest.raises(HttpError):
        _loopback_or_operator(node, FakeCall("192.0.2.7"))
    with pytest.raises(HttpError):
        _loopback_or_operator(node, FakeCall("192.0.2.7", "wrong"))
