"""The node's metrics registry and HTTP API (layer 3, built by ``make_service``).

``node_metrics`` makes the registry the DNS counters, the store, the sweeper, the HTTP site
and the cluster sync all export through; ``make_http`` builds the site from the files read
before the lock; ``add_registration`` mounts ``/v1/registration/*`` when ``[registration]``
is on; ``http_listeners`` gives it one listener per ``[http] listen`` address.
"""

from prometheus_client import CollectorRegistry

from .config import Config
from .group_commit import GroupCommitter
from .http.auth import MULTI_TENANT, WriteAuth
from .http.ratelimit import TokenBucketLimiter
from .http.registration import RegistrationApi, RegistrationSettings
from .http.site import NodeHttp, make_site
from .metrics import NodeMetrics
from .node_dns import transport_counters
from .node_files import NodeFiles
from .node_listener import Listener
from .store.credentials import Credentials
from .store.writes import WriteService

# A connection flood must queue in the kernel rather than see dropped SYNs while the site
# evicts idle connections to make room (dmfdns.http.channel).
HTTP_LISTEN_BACKLOG = 1024


def node_metrics(store, dns_counters, listeners: list, sweeper, stall_probe,
                 workers=None) -> NodeMetrics:
    """A fresh registry watching the store, the DNS counters, the DNS ``listeners`` (read
    at each scrape, so listeners added later count), the sweeper and the stall probe; with
    DNS ``workers`` (a ``node_workers.WorkerPool``), their counters added in."""
    metrics = NodeMetrics(CollectorRegistry())
    metrics.watch_store(store)
    if workers is None:
        metrics.watch_dns(dns_counters)
        metrics.watch_dns_transports(lambda: transport_counters(listeners))
        metrics.watch_dns_workers(lambda: {"0": sum(dns_counters.queries.values())},
                                  lambda: 0, lambda: 0)
    else:
        metrics.watch_dns(lambda: workers.combined_counters(dns_counters))
        metrics.watch_dns_transports(lambda: _merged(transport_counters(listeners),
                                                     workers.transport_counters()))
        metrics.watch_dns_workers(lambda: workers.queries_by_worker(dns_counters),
                                  lambda: workers.restarts, workers.serving)
    metrics.watch_sweeper(lambda: sweeper.removed)
    metrics.watch_stalls(stall_probe)
    return metrics


def _merged(*groups) -> dict:
    merged = {}
    for group in groups:
        for proto, counters in group.items():
            merged.setdefault(proto, []).extend(counters)
    return merged


def make_http(config: Config, reactor, store, files: NodeFiles, metrics: NodeMetrics,
              writes: WriteService, committer: GroupCommitter,
              credentials: Credentials) -> NodeHttp:
    """The HTTP API over ``store``, admitting through ``writes`` and committing through
    ``committer``: write auth (the operator token of ``files``, the users' tokens of
    ``credentials``), rate limits and /metrics access from ``[http]``."""
    http = config.http
    tokens = credentials if http.auth_mode == MULTI_TENANT else None
    auth = WriteAuth(http.auth_mode, operator_token=files.operator_token, tokens=tokens,
                     clock=reactor.seconds)
    metrics_tokens = (http.metrics_token, files.operator_token) if http.metrics_token else ()
    return make_site(
        store=store, writes=writes, clock=reactor, metrics=metrics, auth=auth,
        rate_limit=http.rate_limit, rate_burst=http.rate_burst,
        trusted_proxies=http.trusted_proxies, max_body_bytes=http.max_body_bytes,
        max_connections=http.max_connections,
        max_connections_per_client=http.max_connections_per_client,
        idle_timeout=http.idle_timeout,
        metrics_tokens=metrics_tokens, committer=committer)


def http_listeners(config: Config, reactor, http: NodeHttp) -> list[Listener]:
    return [Listener(reactor, "http", address, http.site, None, backlog=HTTP_LISTEN_BACKLOG)
            for address in config.http.listen]


def add_registration(config: Config, reactor, http: NodeHttp, credentials: Credentials,
                     origins) -> RegistrationApi | None:
    """Mount ``/v1/registration/*`` over ``credentials`` when ``[registration]`` is on;
    minted TSIG keys are scoped to its ``zone`` (default: the first served zone)."""
    settings = config.registration
    if not settings.enabled:
        return None
    zone = settings.zone or (origins[0] if origins else settings.node_hostname)
    api = RegistrationApi(
        credentials=credentials, clock=reactor,
        settings=RegistrationSettings(
            node_hostname=settings.node_hostname, zone=zone, allowlist=settings.allowlist,
            credential_ttl=settings.credential_ttl, token_rate=settings.token_rate,
            token_burst=settings.token_burst, tsig_scope=settings.tsig_scope,
            max_pending=settings.max_pending),
        limiter=TokenBucketLimiter(settings.requests_per_hour / 3600.0,
                                   settings.request_burst, reactor.seconds))
    api.mount(http)
    return api
