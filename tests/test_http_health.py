"""/health, /healthz, /readyz, /stats and /metrics (with the metrics registry behind it)."""

import shutil
import subprocess

import pytest

from dmfdns.dns.counters import DnsCounters
from dmfdns.dns.server import TransportCounters
from dmfdns.http.health import health_endpoint
from dmfdns.http.stats import stats_endpoint
from http_support import Harness


class _BrokenStore:
    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def stats(self):
        raise OSError("mdb_env_stat: Input/output error")


def test_health_is_the_reference_shape():
    node = Harness()
    response = node.request("GET", "/health")
    assert (response.status, response.json()) == (200, {"status": "ok"})


def test_health_reports_a_failing_store_as_degraded():
    node = Harness()
    broken = _BrokenStore(node.store)
    node.http.root.putChild(b"health", health_endpoint(broken, node.http.boundary))
    response = node.request("GET", "/health")
    assert response.status == 503
    assert response.json() == {"status": "degraded",
                               "store": "mdb_env_stat: Input/output error"}


def test_healthz_is_liveness():
    node = Harness()
    assert node.request("GET", "/healthz").json() == {"status": "ok"}
    assert node.request("POST", "/healthz").status == 405


def test_readyz_lists_unmet_conditions_until_they_hold():
    node = Harness()
    readiness = node.http.readiness
    assert node.request("GET", "/readyz").json() == {"status": "ready"}
    readiness.expect("listeners")
    store_open = {"value": True}
    readiness.require("store", lambda: store_open["value"])
    readiness.require("explodes", lambda: 1 / 0)
    response = node.request("GET", "/readyz")
    assert (response.status, response.json()) == (
        503, {"status": "not ready", "unmet": ["listeners", "explodes"]})
    readiness.mark("listeners")
    readiness.require("explodes", lambda: True)
    assert node.request("GET", "/readyz").status == 200
    store_open["value"] = False
    assert node.request("GET", "/readyz").json()["unmet"] == ["store"]


def test_stats_counts_records_and_names():
    node = Harness()
    for value in ("a", "b"):
        node.request("POST", "/v1/records/one.mesh.test", {"value": value})
    node.request("POST", "/v1/records/two.mesh.test", {"value": "c"})
    assert node.request("GET", "/stats").json() == {"records": 3, "names": 2}


def test_stats_never_errors():
    node = Harness()
    node.http.root.putChild(b"stats", stats_endpoint(_BrokenStore(node.store),
                                                     node.http.boundary))
    assert node.request("GET", "/stats").json() == {"records": None, "names": None}


# --- /metrics ---------------------------------------------------------------------------------

def scrape(node, headers=None) -> str:
    response = node.request("GET", "/metrics", headers=headers)
    assert response.status == 200, response
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.body.decode()


def test_metrics_export_requests_store_and_build_info():
    node = Harness()
    node.request("POST", "/v1/records/m.mesh.test", {"value": "x"})
    node.request("GET", "/nowhere")
    text = scrape(node)
    assert 'dmfdns_http_requests_total{code="201",handler="records",method="POST"} 1.0' in text
    assert 'dmfdns_http_requests_total{code="404",handler="not_found",method="GET"} 1.0' in text
    assert "dmfdns_store_values 1.0" in text
    assert "dmfdns_store_names 1.0" in text
    assert 'dmfdns_writes_accepted_total{path="http"} 1.0' in text
    assert 'dmfdns_writes_refused_total{path="sync",reason="owner"} 0.0' in text
    assert "dmfdns_build_info{" in text
    # Three keep-alive connections are open: the two requests' and the scrape's own.
    assert "dmfdns_http_connections 3.0" in text
    assert "m.mesh.test" not in text and "127.0.0.1" not in text


def test_dns_counters_are_exported_at_scrape_time():
    node = Harness()
    counters = DnsCounters()
    node.metrics.watch_dns(counters)
    udp, tcp = TransportCounters(), TransportCounters()
    node.metrics.watch_dns_transports(lambda: {"udp": [udp], "tcp": [tcp]})
    counters.count_query("udp", 16)
    counters.count_query("udp", 16)
    counters.count_query("tcp", 9999)
    counters.count_response("udp", 3, 120)
    counters.count_truncated("udp")
    counters.observe_duration("udp", 0.0003)
    tcp.connections_open, tcp.connections_refused = 4, 2
    text = scrape(node)
    assert 'dmfdns_dns_requests_total{proto="udp",qtype="TXT"} 2.0' in text
    assert 'dmfdns_dns_requests_total{proto="tcp",qtype="other"} 1.0' in text
    assert 'dmfdns_dns_responses_total{proto="udp",rcode="NXDOMAIN"} 1.0' in text
    assert 'dmfdns_dns_truncated_total{proto="udp"} 1.0' in text
    assert 'dmfdns_dns_response_size_bytes_bucket{le="200.0",proto="udp"} 1.0' in text
    assert 'dmfdns_dns_request_duration_seconds_count{proto="udp"} 1.0' in text
    assert 'dmfdns_dns_tcp_connections{proto="tcp"} 4.0' in text
    assert 'dmfdns_dns_tcp_connections_refused_total{proto="tcp"} 2.0' in text
    # Later increments show up in the next scrape: nothing is copied at registration.
    counters.count_query("udp", 16)
    assert 'dmfdns_dns_requests_total{proto="udp",qtype="TXT"} 3.0' in scrape(node)


def test_sweeper_count_is_exported():
    node = Harness()
    removed = {"n": 0}
    node.metrics.watch_sweeper(lambda: removed["n"])
    removed["n"] = 17
    assert "dmfdns_store_swept_total 17.0" in scrape(node)


def test_a_failing_source_leaves_the_scrape_up():
    node = Harness()
    node.metrics.watch_store(_BrokenStore(node.store))
    text = scrape(node)
    assert "dmfdns_build_info" in text


def test_metrics_token_is_required_when_configured():
    node = Harness(operator_token="operator-secret", auth_mode="legacy",
                   site_options={"metrics_tokens": ("scrape-secret", "operator-secret")})
    response = node.request("GET", "/metrics")
    assert (response.status, response.json()) == (401, {"error": "unauthorized"})
    assert response.headers["www-authenticate"] == "Bearer"
    assert node.request("GET", "/metrics",
                        headers={"Authorization": "Bearer nope"}).status == 401
    scrape(node, {"Authorization": "Bearer scrape-secret"})
    scrape(node, {"Authorization": "Bearer operator-secret"})


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_exposition():
    node = Harness()
    counters = DnsCounters()
    node.metrics.watch_dns(counters)
    node.metrics.watch_dns_transports(lambda: {"udp": [TransportCounters()]})
    node.metrics.watch_sweeper(lambda: 0)
    counters.count_query("udp", 16)
    counters.count_response("udp", 0, 80)
    counters.observe_duration("udp", 0.001)
    node.request("POST", "/v1/records/p.mesh.test", {"value": "x"})
    result = subprocess.run(["promtool", "check", "metrics"], input=scrape(node).encode(),
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
