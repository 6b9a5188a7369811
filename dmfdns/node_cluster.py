"""The node's cluster parts: sync endpoints, anti-entropy, gossip and heartbeat (layer 3,
called by ``make_service``).

``cluster_preflight`` reads every ``[cluster]`` file before the node takes its lock (a
ConfigError names the file); ``add_cluster`` starts the ``ClusterSync`` service under the
node and mounts ``/v1/sync/*`` on its HTTP site.
"""

from . import __version__
from .config import (Config, ConfigError, read_manifest_wire, read_operator_key,
                     read_sync_token)
from .http.ratelimit import TokenBucketLimiter
from .http.sync_resources import SyncApi
from .proto.keyfile import parse_seed
from .proto.signing import Signer
from .sync.anti_entropy import Budget
from .sync.service import ClusterSettings, ClusterSync, HeartbeatSettings
from .sync.sync_metrics import SyncCollector


def cluster_preflight(config: Config, zones: list) -> ClusterSettings:
    """The cluster settings, with every ``[cluster]`` file read before the node takes its
    lock (a ConfigError names the file)."""
    cluster = config.cluster
    return ClusterSettings(
        node_id=config.node.node_id, zones=tuple(zones), sync_token=read_sync_token(cluster),
        base=cluster.base or None, operator_key=read_operator_key(cluster),
        initial_manifest=read_manifest_wire(cluster), static_peers=cluster.peers,
        interval=cluster.sync_interval,
        budget=Budget(page_limit=cluster.page_limit, max_pages=cluster.max_pages_per_tick,
                      max_records=cluster.max_records_per_tick, seconds=cluster.tick_budget),
        peer_timeout=cluster.peer_timeout, max_response_bytes=cluster.max_response_bytes,
        fullset_interval=cluster.fullset_interval, heartbeat=_heartbeat_settings(config, zones))


def _heartbeat_settings(config: Config, zones: list) -> HeartbeatSettings | None:
    cluster = config.cluster
    if not cluster.heartbeat_endpoint or not zones:
        return None
    try:
        seed = parse_seed(cluster.heartbeat_key_file.read_bytes())
    except OSError as exc:
        raise ConfigError(f"[cluster] heartbeat_key_file {cluster.heartbeat_key_file}: "
                          f"cannot read: {exc.strerror}") from None
    if seed is None:
        raise ConfigError(f"[cluster] heartbeat_key_file {cluster.heartbeat_key_file}: must "
                          "hold a 32-byte seed (64 hex characters)")
    return HeartbeatSettings(Signer(seed), cluster.heartbeat_endpoint, zones[0],
                             f"dmfdns-{__version__}", cluster.heartbeat_interval,
                             int(cluster.heartbeat_ttl))


def add_cluster(node, settings: ClusterSettings) -> None:
    """Give ``node`` its ``ClusterSync`` (``node.cluster``) and mount ``/v1/sync/*``."""
    reactor, http = node.reactor, node.config.http

    node.cluster = ClusterSync(node.store, reactor, settings, writes=node.writes)
    node.cluster.setServiceParent(node)
    SyncApi(store=node.store, token=settings.sync_token,
            limiter=TokenBucketLimiter(http.rate_limit, http.rate_burst, reactor.seconds),
            current_manifest=node.cluster.current_manifest,
            index=node.cluster.index if settings.sync_token else None).mount(node.http)
    node.metrics.registry.register(SyncCollector(node.cluster))
