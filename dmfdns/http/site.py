"""The node's twisted.web site: the resource tree and its connection limits.

``make_site`` is the one place that knows every endpoint::

    /v1/records/{name}   GET POST DELETE    dmfdns.http.records
    /health              GET                reference-compatible store probe
    /healthz             GET                liveness
    /readyz              GET                readiness (503 until every condition holds)
    /stats               GET                {"records", "names"}
    /metrics             GET                Prometheus text (bearer token if configured)
    /                    GET                a small JSON index
    anything else        404 {"error": "not found"}

Later endpoints (sync, registration) join through ``NodeHttp.add(path, endpoint)``.
"""

import ipaddress
from dataclasses import dataclass

from .. import __version__
from ..group_commit import GroupCommitter
from ..store.writes import WriteService
from .auth import OPEN, WriteAuth
from .channel import NodeSite
from .endpoint import Boundary, Endpoint, NotFound, Reply, Tree
from .health import Readiness, health_endpoint, healthz_endpoint, readyz_endpoint
from .metrics_page import metrics_endpoint
from .ratelimit import ProxyTrust, TokenBucketLimiter
from .records import RecordsApi
from .stats import stats_endpoint

DEFAULT_REQUEST_TIMEOUT = 10.0


class OpenBindRefused(ValueError):
    """``open`` auth on a non-loopback address without the explicit opt-in."""


def check_bind(auth_mode: str, host: str, *, allow_open_non_loopback: bool) -> None:
    """Refuse to serve unauthenticated writes beyond loopback (docs/compatibility.md §2)."""
    if auth_mode != OPEN or allow_open_non_loopback:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise OpenBindRefused(
            f"auth_mode \"open\" would let anyone write through {host}; use an operator "
            "token (legacy or multi-tenant) or allow_open_non_loopback")


@dataclass
class NodeHttp:
    """The built site and the parts a node wires further (readiness, more endpoints)."""

    site: NodeSite
    root: Tree
    v1: Tree
    boundary: Boundary
    readiness: Readiness
    records: RecordsApi

    def add(self, path: str, endpoint) -> None:
        """Mount ``endpoint`` at ``path`` (e.g. ``"v1/sync/digest"``), creating inner nodes."""
        parts = path.strip("/").split("/")
        node = self.root
        for part in parts[:-1]:
            child = node.children.get(part.encode())
            if child is None:
                child = Tree(node.not_found)
                node.putChild(part.encode(), child)
            node = child
        node.putChild(parts[-1].encode(), endpoint)


def make_site(*, store, writes: WriteService, clock, metrics, auth: WriteAuth,
              rate_limit: float = 100.0, rate_burst: int = 1000, trusted_proxies=(),
              max_body_bytes: int = 65536, max_connections: int = 256,
              max_connections_per_client: int | None = None,
              idle_timeout: float = 30.0, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
              metrics_tokens=(), readiness: Readiness | None = None,
              committer: GroupCommitter | None = None) -> NodeHttp:
    """The HTTP API of a node over ``store``, writing through ``writes`` (the node's one
    write service, which knows the served zones and the caps).

    ``clock`` is an ``IReactorTime`` (timeouts, rate limits, record times); ``metrics`` a
    ``dmfdns.metrics.NodeMetrics``; ``metrics_tokens`` the bearer tokens that may scrape
    ``/metrics`` (none: open).
    """
    boundary = Boundary(clock=clock, observe=metrics.observe_http,
                        proxies=ProxyTrust(trusted_proxies))
    readiness = readiness or Readiness()
    not_found = NotFound(boundary)
    root, v1 = Tree(not_found), Tree(not_found)
    records = RecordsApi(store=store, writes=writes, auth=auth,
                         limiter=TokenBucketLimiter(rate_limit, rate_burst, clock.seconds),
                         committer=committer or GroupCommitter(writes.commit, clock))
    root.putChild(b"", _index_endpoint(boundary))
    root.putChild(b"v1", v1)
    v1.putChild(b"records", records.endpoint(boundary))
    root.putChild(b"health", health_endpoint(store, boundary))
    root.putChild(b"healthz", healthz_endpoint(boundary))
    root.putChild(b"readyz", readyz_endpoint(readiness, boundary))
    root.putChild(b"stats", stats_endpoint(store, boundary))
    root.putChild(b"metrics", metrics_endpoint(metrics.registry, boundary,
                                               tokens=metrics_tokens))
    site = NodeSite(root, clock=clock, max_connections=max_connections,
                    max_per_client=max_connections_per_client,
                    idle_timeout=idle_timeout, max_body_bytes=max_body_bytes,
                    request_timeout=request_timeout,
                    refusal_observer=lambda status: metrics.observe_http(
                        "none", "other", status, 0.0))
    metrics.watch_http(site.counters)
    return NodeHttp(site, root, v1, boundary, readiness, records)


def _index_endpoint(boundary: Boundary) -> Endpoint:
    index = {"service": "dmfdns", "version": __version__,
             "endpoints": ["/v1/records/{name}", "/health", "/healthz", "/readyz", "/stats",
                           "/metrics"]}
    return Endpoint("index", {"GET": lambda call: Reply(200, index)}, boundary)
