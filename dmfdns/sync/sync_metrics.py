"""Prometheus families of the cluster side, built at scrape time from plain counters.

Per peer (a handful per cluster, so ``peer`` is a bounded label): lag, last success,
records pulled and applied, records rejected by reason, call errors by reason, bytes moved,
the full-set verdict; for the manifest: its seq, adoptions and refusals by reason; for the
heartbeat: publications and failures. Names follow docs/decisions.md §8.4.
"""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.logger import Logger

log = Logger(namespace="dmfdns.sync")


class SyncCollector:
    def __init__(self, cluster):
        self._cluster = cluster

    def describe(self):
        return []

    def collect(self):
        try:
            return list(self._families())
        except Exception:
            log.failure("sync metrics failed")
            return []

    def _families(self):
        states = sorted(self._cluster.anti_entropy.states.values(),
                        key=lambda s: s.peer.peer_id)
        yield _per_peer(GaugeMetricFamily, "dmfdns_sync_peer_lag_seconds",
                        "How far the cursor trails the peer's log (0 when caught up).",
                        states, lambda s: s.lag_seconds)
        yield _per_peer(GaugeMetricFamily, "dmfdns_sync_peer_last_success_timestamp_seconds",
                        "When a sync with the peer last completed (0: never).",
                        states, lambda s: s.last_success or 0)
        yield _per_peer(GaugeMetricFamily, "dmfdns_sync_peer_converged",
                        "1 when the last full-set comparison matched the peer.",
                        states, lambda s: 1 if s.converged else 0)
        yield _per_peer(CounterMetricFamily, "dmfdns_sync_records_pulled",
                        "Records received from the peer and admitted.",
                        states, lambda s: s.pulled)
        yield _per_peer(CounterMetricFamily, "dmfdns_sync_records_applied",
                        "Pulled records that changed the store.", states, lambda s: s.applied)
        yield _per_peer(CounterMetricFamily, "dmfdns_sync_digest_pages",
                        "Digest pages read from the peer.", states, lambda s: s.pages)
        yield _per_peer(CounterMetricFamily, "dmfdns_sync_bytes_received",
                        "Bytes of peer answers read.", states, lambda s: s.bytes_received)
        yield _per_peer(CounterMetricFamily, "dmfdns_sync_bytes_sent",
                        "Bytes of requests sent to the peer.", states, lambda s: s.bytes_sent)
        yield _by_reason("dmfdns_sync_records_rejected", "Digest entries and records from "
                         "the peer refused, by reason.", states, lambda s: s.rejected)
        yield _by_reason("dmfdns_sync_errors", "Calls to the peer that failed, by reason.",
                         states, lambda s: s.errors)
        yield _by_reason("dmfdns_sync_fullset_checks", "Full-set comparisons with the peer, "
                         "by result.", states, lambda s: s.fullset_checks, label="result")
        yield from self._manifest_families()
        heartbeat = self._cluster.heartbeat
        if heartbeat is not None:
            yield CounterMetricFamily("dmfdns_heartbeat_published", "Heartbeats published.",
                                      value=heartbeat.published)
            yield CounterMetricFamily("dmfdns_heartbeat_failures", "Heartbeat publications "
                                      "that failed.", value=heartbeat.failures)

    def _manifest_families(self):
        keeper = self._cluster.keeper
        if keeper is None:
            return
        yield GaugeMetricFamily("dmfdns_cluster_manifest_seq", "Seq of the manifest in force "
                                "(0: none).", value=keeper.current[1].seq if keeper.current else 0)
        yield CounterMetricFamily("dmfdns_cluster_manifest_adoptions", "Manifests adopted.",
                                  value=keeper.adoptions)
        refused = CounterMetricFamily("dmfdns_cluster_manifest_rejected", "Distinct manifests "
                                      "refused, by reason.", labels=["reason"])
        for reason, count in sorted(keeper.rejected.items()):
            refused.add_metric([reason], count)
        yield refused


def _per_peer(kind, name, text, states, value):
    family = kind(name, text, labels=["peer"])
    for state in states:
        family.add_metric([state.peer.peer_id], value(state))
    return family


def _by_reason(name, text, states, table, label="reason"):
    family = CounterMetricFamily(name, text, labels=["peer", label])
    for state in states:
        for reason, count in sorted(table(state).items()):
            family.add_metric([state.peer.peer_id, reason], count)
    return family
