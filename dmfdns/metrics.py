"""The node's Prometheus metrics, all on one injected ``CollectorRegistry``.

Names follow docs/decisions.md §8.4: the ``dmfdns_`` prefix, base units (seconds, bytes),
``_total`` on counters, ``_info`` for build metadata, and no high-cardinality labels (never
a query name, a record name or a client address). The DNS hot path keeps plain integers
(``dmfdns.dns.counters``, ``dmfdns.dns.server.TransportCounters``) and so do the HTTP
connections (``dmfdns.http.channel.HttpCounters``); collectors here turn them into metric
families at scrape time, so serving a query never touches prometheus-client. A collector
never raises: a source that fails is left out of that scrape.
"""

import platform
from typing import Callable

import twisted
from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from twisted.logger import Logger

from . import __version__
from .dns.xfr import KINDS, RESULTS
from .proto.admission import REASONS

# CoreDNS-style duration buckets (docs/decisions.md §8.4), 0.25 ms to about 8 s.
HTTP_DURATION_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064,
                         0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192)
WRITE_PATHS = ("http", "sync", "update")

_log = Logger()


class NodeMetrics:
    """Every metric of one node, registered on ``registry`` (never the global one)."""

    def __init__(self, registry: CollectorRegistry, *, version: str = __version__):
        self.registry = registry
        Info("dmfdns_build", "Version of dmfdns and of the runtime it runs on.",
             registry=registry).info({"version": version,
                                      "python": platform.python_version(),
                                      "twisted": twisted.__version__})
        self.http_requests = Counter(
            "dmfdns_http_requests", "HTTP requests answered, by endpoint, method and status.",
            ["handler", "method", "code"], registry=registry)
        self.http_duration = Histogram(
            "dmfdns_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["handler"], buckets=HTTP_DURATION_BUCKETS, registry=registry)
        self.writes_accepted = Counter(
            "dmfdns_writes_accepted", "Record writes admitted and stored, by write path.",
            ["path"], registry=registry)
        self.writes_refused = Counter(
            "dmfdns_writes_refused", "Record writes refused by admission, by path and reason.",
            ["path", "reason"], registry=registry)
        for path in WRITE_PATHS:  # export zeros, so rate() works from the first scrape
            self.writes_accepted.labels(path)
            for reason in REASONS:
                self.writes_refused.labels(path, reason)

    # --- events ---------------------------------------------------------------------------

    def observe_http(self, handler: str, method: str, code: int, seconds: float) -> None:
        self.http_requests.labels(handler, method, str(code)).inc()
        self.http_duration.labels(handler).observe(seconds)

    def write_accepted(self, path: str) -> None:
        self.writes_accepted.labels(path).inc()

    def write_refused(self, path: str, reason: str) -> None:
        self.writes_refused.labels(path, reason).inc()

    def observe_write(self, path: str, accepted: bool, reason: str | None) -> None:
        """The write service's ``observe`` hook: one admission decision."""
        if accepted:
            self.write_accepted(path)
        else:
            self.write_refused(path, reason or "other")

    # --- sources read at scrape time ------------------------------------------------------

    def watch_store(self, store) -> None:
        """Export ``store.stats()``: values, names, tombstones, LMDB map use."""
        self.registry.register(_StoreCollector(store))

    def watch_sweeper(self, removed: Callable[[], int]) -> None:
        """Export the sweeper's running count of expired values and tombstones removed."""
        self.registry.register(_SweepCollector(removed))

    def watch_stalls(self, probe) -> None:
        """Export a ``dmfdns.stall_probe.StallProbe``: how late the reactor ran a timer."""
        self.registry.register(_StallCollector(probe))

    def watch_commits(self, committer) -> None:
        """Export a ``dmfdns.group_commit.GroupCommitter``'s commits and writes."""
        self.registry.register(_CommitCollector(committer))

    def watch_updates(self, counters) -> None:
        """Export a ``dmfdns.dns.update_handler.UpdateCounters``."""
        self.registry.register(_UpdateCollector(counters))

    def watch_dns(self, counters) -> None:
        """Export a ``dmfdns.dns.counters.DnsCounters`` (or a callable returning one at
        each scrape: the sum over the DNS worker processes)."""
        self.registry.register(_DnsCollector(counters))

    def watch_dnssec(self, signers: Callable[[], dict]) -> None:
        """Export online signing per signed zone: ``signers()`` gives ``{origin:
        dns.signer.ZoneSigner}`` at each scrape (a reload replaces them)."""
        self.registry.register(_DnssecCollector(signers))

    def watch_stored_signatures(self, writer, resigner) -> None:
        """Export the RRSIGs signed at write time (``dns.write_signer.WriteSigner``) and
        by the background re-signer (``node_resign.Resigner``)."""
        self.registry.register(_StoredSignaturesCollector(writer, resigner))

    def watch_dns_workers(self, queries: Callable[[], dict], restarts: Callable[[], int],
                          running: Callable[[], int]) -> None:
        """Export the DNS worker processes: queries per process, restarts, live workers."""
        self.registry.register(_WorkersCollector(queries, restarts, running))

    def watch_dns_transports(self, transports: Callable[[], dict]) -> None:
        """Export the listeners' ``TransportCounters``: ``transports()`` returns
        ``{proto: [counters, ...]}`` (several listeners per protocol are summed)."""
        self.registry.register(_TransportCollector(transports))

    def watch_transfers(self, transfers, notify) -> None:
        """Export zone transfer counters (``dns.xfr.TransferCounters``) and NOTIFY
        counters (``dns.notifier.NotifyCounters``); zeros on a node without transfers."""
        self.registry.register(_TransferCollector(transfers, notify))

    def watch_http(self, counters) -> None:
        """Export a site's ``dmfdns.http.channel.HttpCounters``."""
        self.registry.register(_HttpConnectionCollector(counters))


class _SafeCollector:
    """``collect`` yields what its source gives, or nothing if reading the source fails."""

    def collect(self):
        try:
            families = list(self.families())
        except Exception:
            _log.failure("metrics source {source} failed", source=type(self).__name__)
            return []
        return families

    def describe(self):
        return []  # dynamic: keeps the registry from calling collect at registration


class _StoreCollector(_SafeCollector):
    def __init__(self, store):
        self._store = store

    def families(self):
        stats = self._store.stats()
        yield _gauge("dmfdns_store_values", "Values stored (expired ones until swept).",
                     stats.values)
        yield _gauge("dmfdns_store_names", "Owner names holding values or tombstones.",
                     stats.names)
        yield _gauge("dmfdns_store_tombstones", "Deleted values still replicating.",
                     getattr(stats, "tombstones", 0))
        yield _gauge("dmfdns_store_map_used_bytes", "Bytes of the LMDB map in use.",
                     stats.map_used_bytes)
        yield _gauge("dmfdns_store_map_size_bytes", "Size of the LMDB map (the most the "
                     "store can hold).", stats.map_size_bytes)


class _SweepCollector(_SafeCollector):
    def __init__(self, removed):
        self._removed = removed

    def families(self):
        yield CounterMetricFamily("dmfdns_store_swept", "Expired values and tombstones "
                                  "removed from the store.", value=self._removed())


class _StallCollector(_SafeCollector):
    def __init__(self, probe):
        self._probe = probe

    def families(self):
        probe = self._probe
        yield _gauge("dmfdns_reactor_stall_max_seconds", "The most a 10 ms timer on the "
                     "reactor has run late since start: the longest the reactor was held.",
                     probe.max_lateness)
        family = HistogramMetricFamily("dmfdns_reactor_lateness_seconds", "How late the "
                                       "reactor ran each tick of a 10 ms timer.")
        family.add_metric([], [(_bound(le), n) for le, n in probe.histogram()],
                          probe.total_lateness)
        yield family


class _UpdateCollector(_SafeCollector):
    def __init__(self, counters):
        self._counters = counters

    def families(self):
        counters = self._counters
        responses = CounterMetricFamily(
            "dmfdns_dns_updates", "DNS UPDATE messages answered, by TSIG state (signed: "
            "verified, unsigned: claims) and rcode.", labels=["tsig", "rcode"])
        for (signed, rcode), count in sorted(counters.responses.items()):
            responses.add_metric([signed, rcode], count)
        yield responses
        yield _labelled_counter("dmfdns_dns_update_tsig_errors", "UPDATEs refused for their "
                                "TSIG (RFC 8945 errors).", "error", counters.tsig_errors)
        yield CounterMetricFamily("dmfdns_dns_update_replays", "Signed UPDATEs refused as "
                                  "replays inside the TSIG time window.",
                                  value=counters.replays)
        yield CounterMetricFamily("dmfdns_claims_accepted", "Unsigned claims stored "
                                  "(first contact).", value=counters.claims_accepted)
        yield CounterMetricFamily("dmfdns_claims_refused", "Unsigned claim writes refused "
                                  "(shape, signature, lifetime, caps).",
                                  value=counters.claims_refused)
        yield _labelled_counter("dmfdns_claims_throttled", "Unsigned claims refused because "
                                "their mailbox bucket or the node-wide claim budget was empty.",
                                "budget", counters.claims_throttled)


class _CommitCollector(_SafeCollector):
    def __init__(self, committer):
        self._committer = committer

    def families(self):
        committer = self._committer
        yield CounterMetricFamily("dmfdns_store_commits", "Group commits: durable store "
                                  "transactions carrying queued writes.",
                                  value=committer.commits)
        yield CounterMetricFamily("dmfdns_store_committed_writes", "Writes carried by "
                                  "group commits (divided by commits: the mean batch).",
                                  value=committer.writes)
        yield CounterMetricFamily("dmfdns_store_failed_commits", "Group commits that "
                                  "failed; every write in them was answered with the error.",
                                  value=committer.failed_commits)


class _DnsCollector(_SafeCollector):
    def __init__(self, counters):
        self._counters = counters       # DnsCounters, or a callable giving them per scrape

    def families(self):
        c = self._counters() if callable(self._counters) else self._counters
        requests = CounterMetricFamily("dmfdns_dns_requests", "DNS queries received, by "
                                       "transport and query type.", labels=["proto", "qtype"])
        for (proto, qtype), n in sorted(c.query_counts().items()):
            requests.add_metric([proto, qtype], n)
        yield requests
        responses = CounterMetricFamily("dmfdns_dns_responses", "DNS responses sent, by "
                                        "transport and rcode.", labels=["proto", "rcode"])
        for (proto, rcode), n in sorted(c.response_counts().items()):
            responses.add_metric([proto, rcode], n)
        yield responses
        yield _labelled_counter("dmfdns_dns_truncated", "UDP responses cut to the header "
                                "and question with TC set.", "proto", c.truncated_counts())
        yield _labelled_counter("dmfdns_dns_dropped", "Packets answered with silence, by "
                                "reason.", "reason", c.dropped_counts())
        yield _labelled_counter("dmfdns_dns_answer_errors", "Queries answered SERVFAIL "
                                "because deciding the answer raised (a store failure or a "
                                "bug; logged once per interval).", "proto",
                                {"udp": 0, "tcp": 0, **c.errors})
        rrl = {action: c.rrl.get(action, 0) for action in ("slipped", "dropped")}
        yield _labelled_counter("dmfdns_rrl_actions", "Responses response-rate limiting "
                                "replaced by a truncated one (slipped) or did not send "
                                "(dropped).", "action", rrl)
        yield _histogram("dmfdns_dns_request_duration_seconds", "Time from a query's "
                         "arrival to its response.", c.durations())
        yield _histogram("dmfdns_dns_response_size_bytes", "Size of DNS responses.",
                         c.response_sizes())
        yield _labelled_counter("dmfdns_dnssec_answers", "Positive DO answers of signed "
                                "zones on the fast path: with the RRSIGs stored at write "
                                "time (stored), or left to on-the-fly signing because none "
                                "fit the live RRset (fallback).", "source",
                                {"stored": 0, "fallback": 0, **c.signed})
        cache = c.cache_counts()
        yield CounterMetricFamily("dmfdns_dns_answer_cache_hits", "DNS queries answered from "
                                  "the answer cache.", value=cache["hits"])
        yield CounterMetricFamily("dmfdns_dns_answer_cache_misses", "DNS queries looked up "
                                  "in the answer cache and not answered from it.",
                                  value=cache["misses"])
        yield CounterMetricFamily("dmfdns_dns_answer_cache_evictions", "Answers dropped from "
                                  "the answer cache to stay within its bounds.",
                                  value=cache["evictions"])
        yield CounterMetricFamily("dmfdns_dns_answer_cache_declined", "Answers a full answer "
                                  "cache did not store on their first miss (doorkeeper).",
                                  value=cache["declined"])
        yield _gauge("dmfdns_dns_answer_cache_entries", "Answers in the answer cache.",
                     cache["entries"])
        yield _gauge("dmfdns_dns_answer_cache_bytes", "Estimated memory of the answer "
                     "cache (keys, responses and per-entry overhead).", cache["bytes"])
        yield _gauge("dmfdns_dns_answer_cache_max_bytes", "The answer cache's memory bound "
                     "(\"auto\": follows the names stored), summed over the DNS processes.",
                     cache["max_bytes"])


class _DnssecCollector(_SafeCollector):
    def __init__(self, signers):
        self._signers = signers

    def families(self):
        signers = self._signers()
        yield _labelled_counter("dmfdns_dnssec_signatures", "RRSIG signatures computed "
                                "(signature cache misses), per signed zone.", "zone",
                                {zone: s.signatures_made for zone, s in signers.items()})
        yield _labelled_counter("dmfdns_dnssec_signature_cache_hits", "RRSIG signatures "
                                "served from the signature cache, per signed zone.", "zone",
                                {zone: s.cache_hits for zone, s in signers.items()})
        entries = GaugeMetricFamily("dmfdns_dnssec_signature_cache_entries", "Signatures "
                                    "in the signature cache, per signed zone.",
                                    labels=["zone"])
        for zone, signer in sorted(signers.items()):
            entries.add_metric([zone], signer.cached_signatures)
        yield entries


class _StoredSignaturesCollector(_SafeCollector):
    def __init__(self, writer, resigner):
        self._writer, self._resigner = writer, resigner

    def families(self):
        writer, resigner = self._writer, self._resigner
        yield CounterMetricFamily("dmfdns_dnssec_stored_signatures", "RRSIG signatures made "
                                  "to be stored with a name's answer (at write time and by "
                                  "the re-signer).", value=writer.signatures)
        yield CounterMetricFamily("dmfdns_dnssec_stored_records", "Names whose RRSIGs were "
                                  "stored (written or re-signed).", value=writer.records)
        yield CounterMetricFamily("dmfdns_dnssec_resigned", "Names the background re-signer "
                                  "signed again (window moved, keys changed, unsigned).",
                                  value=resigner.resigned)
        yield CounterMetricFamily("dmfdns_dnssec_resign_scanned", "Names the background "
                                  "re-signer checked.", value=resigner.scanned)
        yield CounterMetricFamily("dmfdns_dnssec_signing_failures", "Names left unsigned "
                                  "by a failed signing or re-signing (then signed on the "
                                  "fly).", value=writer.failures + resigner.failures)


class _WorkersCollector(_SafeCollector):
    def __init__(self, queries, restarts, running):
        self._queries, self._restarts, self._running = queries, restarts, running

    def families(self):
        yield _labelled_counter("dmfdns_dns_worker_queries", "DNS queries received by each "
                                "process answering DNS (worker 0 is the main process).",
                                "worker", self._queries())
        yield CounterMetricFamily("dmfdns_dns_worker_restarts", "DNS worker processes "
                                  "started again after they ended.", value=self._restarts())
        yield _gauge("dmfdns_dns_workers", "DNS worker processes serving (bound and "
                     "reporting; besides the main process).", self._running())


class _TransportCollector(_SafeCollector):
    _FIELDS = (
        ("connections_open", "gauge", "dmfdns_dns_tcp_connections",
         "Open DNS TCP connections."),
        ("connections_refused", "counter", "dmfdns_dns_tcp_connections_refused",
         "New DNS TCP connections closed at once: full, and no connection quiet enough "
         "to close."),
        ("connections_evicted", "counter", "dmfdns_dns_tcp_connections_evicted",
         "Quiet DNS TCP connections closed to make room for a new one."),
        ("idle_timeouts", "counter", "dmfdns_dns_tcp_idle_timeouts",
         "DNS TCP connections closed for being idle."),
        ("errors", "counter", "dmfdns_dns_responder_errors",
         "Queries on which the responder raised (a bug; logged once per interval, "
         "answered SERVFAIL)."),
    )

    def __init__(self, transports):
        self._transports = transports

    def families(self):
        totals = {}
        for proto, listeners in self._transports().items():
            for counters in listeners:
                for field, *_ in self._FIELDS:
                    key = (field, proto)
                    totals[key] = totals.get(key, 0) + getattr(counters, field, 0)
        protos = sorted({proto for _, proto in totals})
        for field, kind, name, text in self._FIELDS:
            family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(
                name, text, labels=["proto"])
            for proto in protos:
                family.add_metric([proto], totals[(field, proto)])
            yield family


class _HttpConnectionCollector(_SafeCollector):
    def __init__(self, counters):
        self._counters = counters

    def families(self):
        c = self._counters
        yield _gauge("dmfdns_http_connections", "Open HTTP connections.", c.connections_open)
        yield CounterMetricFamily("dmfdns_http_connections_accepted",
                                  "HTTP connections accepted.", value=c.connections_accepted)
        yield CounterMetricFamily("dmfdns_http_connections_evicted", "Idle HTTP connections "
                                  "closed to make room under the connection cap.",
                                  value=c.connections_evicted)
        yield CounterMetricFamily("dmfdns_http_connections_refused", "HTTP connections "
                                  "refused at the cap with every connection busy.",
                                  value=c.connections_refused)
        yield CounterMetricFamily("dmfdns_http_idle_timeouts", "HTTP connections closed "
                                  "for being idle.", value=c.idle_timeouts)
        yield CounterMetricFamily("dmfdns_http_slow_requests", "HTTP requests not received "
                                  "within the read deadline (408).", value=c.slow_requests)


class _TransferCollector(_SafeCollector):
    def __init__(self, transfers, notify):
        self._transfers, self._notify = transfers, notify

    def families(self):
        family = CounterMetricFamily(
            "dmfdns_xfr_requests", "Zone transfer requests by kind (axfr, ixfr) and result "
            "(full, incremental, current, udp-soa, refused, notauth, formerr).",
            labels=["kind", "result"])
        requests = self._transfers.requests
        for kind in KINDS:                   # zeros too, so rate() works from the start
            for result in RESULTS:
                family.add_metric([kind, result], requests.get((kind, result), 0))
        yield family
        yield CounterMetricFamily("dmfdns_xfr_messages", "Zone transfer messages sent.",
                                  value=self._transfers.messages)
        yield CounterMetricFamily("dmfdns_xfr_sent_bytes", "Zone transfer bytes sent.",
                                  value=self._transfers.bytes)
        notify = CounterMetricFamily(
            "dmfdns_notify", "NOTIFY events: sent, retries, acknowledged, failed (error "
            "answers), send_errors, rounds.", labels=["event"])
        for event, n in sorted(self._notify.as_dict().items()):
            notify.add_metric([event], n)
        yield notify


def _gauge(name: str, text: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _labelled_counter(name: str, text: str, label: str, counts: dict):
    family = CounterMetricFamily(name, text, labels=[label])
    for key, n in sorted(counts.items()):
        family.add_metric([key], n)
    return family


def _histogram(name: str, text: str, snapshots: dict):
    family = HistogramMetricFamily(name, text, labels=["proto"])
    for proto, snap in sorted(snapshots.items()):
        buckets = [(_bound(le), n) for le, n in snap.buckets]
        family.add_metric([proto], buckets, snap.sum)
    return family


def _bound(le) -> str:
    return "+Inf" if le == float("inf") else repr(float(le))
