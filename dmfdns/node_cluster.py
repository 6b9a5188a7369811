"""The node's cluster parts: sync endpoints, anti-entropy, gossip and heartbeat (layer 3,
built by ``make_service``).

``cluster_settings`` turns ``[cluster]`` and the files read before the lock into
``ClusterSettings``; ``make_cluster`` builds the ``ClusterSync`` service, mounts
``/v1/sync/*`` on the node's HTTP site and exports the sync metrics.
"""

from . import __version__
from .config import Config
from .http.ratelimit import TokenBucketLimiter
from .http.site import NodeHttp
from .http.sync_resources import SyncApi
from .metrics import NodeMetrics
from .node_files import NodeFiles
from .proto.signing import Signer
from .store.writes import WriteService
from .sync.anti_entropy import Budget
from .sync.service import ClusterSettings, ClusterSync, HeartbeatSettings
from .sync.sync_metrics import SyncCollector


def cluster_settings(config: Config, files: NodeFiles) -> ClusterSettings:
    cluster = config.cluster
    return ClusterSettings(
        node_id=config.node.node_id, zones=files.origins, sync_token=files.sync_token,
        base=cluster.base or None, operator_key=files.operator_key,
        initial_manifest=files.manifest_wire, static_peers=cluster.peers,
        interval=cluster.sync_interval,
        budget=Budget(page_limit=cluster.page_limit, max_pages=cluster.max_pages_per_tick,
                      max_records=cluster.max_records_per_tick, seconds=cluster.tick_budget),
        peer_timeout=cluster.peer_timeout, max_response_bytes=cluster.max_response_bytes,
        fullset_interval=cluster.fullset_interval, heartbeat=_heartbeat(config, files),
        tls=files.tls.peers, allow_plain_http_peers=cluster.allow_plain_http_peers)


def _heartbeat(config: Config, files: NodeFiles) -> HeartbeatSettings | None:
    if files.heartbeat_seed is None:
        return None
    cluster = config.cluster
    return HeartbeatSettings(Signer(files.heartbeat_seed), cluster.heartbeat_endpoint,
                             files.origins[0], f"dmfdns-{__version__}",
                             cluster.heartbeat_interval, int(cluster.heartbeat_ttl))


def make_cluster(config: Config, reactor, store, files: NodeFiles, *, metrics: NodeMetrics,
                 http: NodeHttp, writes: WriteService, run_write=None,
                 transport=None) -> ClusterSync:
    """The cluster sync over ``store``, admitting what it pulls through ``writes`` and
    committing it through ``run_write`` (the group commit's ``call``), its endpoints
    mounted on ``http`` and its metrics in ``metrics``; ``transport`` (default: real HTTP
    to the peers) carries its calls to peers."""
    settings = cluster_settings(config, files)
    cluster = ClusterSync(store, reactor, settings, transport=transport, writes=writes,
                          run_write=run_write)
    SyncApi(store=store, token=settings.sync_token,
            limiter=TokenBucketLimiter(config.http.rate_limit, config.http.rate_burst,
                                       reactor.seconds),
            current_manifest=cluster.current_manifest,
            index=cluster.index if settings.sync_token else None,
            require_client_certificate=config.cluster.require_client_certificate,
            slicer=cluster.slicer).mount(http)
    metrics.registry.register(SyncCollector(cluster))
    return cluster
