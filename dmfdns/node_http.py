"""The node's metrics registry and HTTP API (layer 3, called by ``make_service``).

``http_preflight`` reads the operator token and the pinned operator key before the node
takes its lock, so a bad file is a ConfigError that leaves nothing behind;
``add_metrics_and_http`` gives a node its registry (shared by the DNS counters, the store,
the sweeper and the HTTP site) and one HTTP listener per ``[http] listen`` address.
"""

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from .config import Config, ConfigError, read_operator_key, read_operator_token
from .http.auth import MULTI_TENANT, WriteAuth
from .http.site import OpenBindRefused, check_bind, make_site
from .metrics import NodeMetrics

# A connection flood must queue in the kernel rather than see dropped SYNs while the site
# evicts idle connections to make room (dmfdns.http.channel).
HTTP_LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class HttpSecrets:
    """What the HTTP API reads from files before the node takes its lock."""

    operator_token: str
    operator_key: bytes | None  # the pinned key that must sign cluster.<base>


def http_preflight(config: Config) -> HttpSecrets:
    """The operator token and pinned operator key, after refusing an ``open`` write API
    beyond loopback (checked again here, not only by the config loader, because this is
    where sockets get bound)."""
    for address in config.http.listen:
        try:
            check_bind(config.http.auth_mode, address.host,
                       allow_open_non_loopback=config.http.allow_open_non_loopback)
        except OpenBindRefused as exc:
            raise ConfigError(f"[http] {exc}") from None
    return HttpSecrets(read_operator_token(config.http), read_operator_key(config.cluster))


def add_metrics_and_http(node, secrets: HttpSecrets) -> None:
    """Give ``node`` its metrics registry (``node.metrics``), shared by the DNS counters and
    the HTTP site, and an HTTP listener per ``[http] listen`` address (``node.http``)."""
    config, reactor = node.config, node.reactor
    node.metrics = NodeMetrics(CollectorRegistry())
    node.metrics.watch_store(node.store)
    node.metrics.watch_dns(node.dns_counters)
    node.metrics.watch_dns_transports(lambda: _listener_counters(node))
    node.metrics.watch_sweeper(lambda: node.sweeper.removed)
    node.metrics.watch_stalls(node.stall_probe)
    node.metrics.watch_commits(node.committer)
    http = config.http
    tokens = node.credentials if http.auth_mode == MULTI_TENANT else None
    operator_token = secrets.operator_token
    auth = WriteAuth(http.auth_mode, operator_token=operator_token, tokens=tokens,
                     clock=reactor.seconds)
    metrics_tokens = (http.metrics_token, operator_token) if http.metrics_token else ()
    node.http = make_site(
        store=node.store, writes=node.writes, clock=reactor,
        metrics=node.metrics, auth=auth, rate_limit=http.rate_limit,
        rate_burst=http.rate_burst, trusted_proxies=http.trusted_proxies,
        max_body_bytes=http.max_body_bytes, max_connections=http.max_connections,
        idle_timeout=http.idle_timeout, metrics_tokens=metrics_tokens,
        committer=node.committer)
    node.http.readiness.require("store", lambda: node.readiness()["store"])
    node.http.readiness.require("listeners", lambda: node.readiness()["listeners"])
    for address in http.listen:
        node.listen("http", address, node.http.site, backlog=HTTP_LISTEN_BACKLOG)


def _listener_counters(node) -> dict:
    """``{"udp": [TransportCounters, ...], "tcp": [...]}`` of the DNS listeners."""
    grouped = {}
    for listener in node.listeners:
        if listener.kind in ("udp", "tcp"):
            grouped.setdefault(listener.kind, []).append(listener.counters)
    return grouped
