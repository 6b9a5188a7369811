"""Several nodes' sync machinery in one process on one ``task.Clock``, without sockets.

Each ``FakeNode`` has a MemoryStore, its real twisted.web site with ``/v1/records`` and
``/v1/sync/*``, and a ``ClusterSync``. Peers talk through ``SiteTransport``: a request goes
into the other node's site over a StringTransport and the response bytes come back, so the
whole HTTP path (auth, JSON, headers, status codes) is exercised deterministically. Links
can be cut, and a peer URL can be served by a hostile handler instead of a node.
"""

import json
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from dmfdns.http.auth import WriteAuth
from dmfdns.http.ratelimit import TokenBucketLimiter
from dmfdns.http.site import make_site
from dmfdns.store.writes import WriteService
from dmfdns.http.sync_resources import SyncApi
from dmfdns.metrics import NodeMetrics
from dmfdns.proto import cluster_manifest
from dmfdns.proto.cluster_manifest import ClusterNode
from dmfdns.proto.signing import Signer
from dmfdns.store.memory_store import MemoryStore
from dmfdns.sync.anti_entropy import Budget
from dmfdns.sync.peer_client import HttpResponse, PeerError, UNREACHABLE
from dmfdns.sync.service import ClusterSettings, ClusterSync
from dmfdns.sync.sync_metrics import SyncCollector
from http_support import parse_responses, request_bytes

NOW = 1_800_000_000.0
ZONE = "mesh.test"
BASE = "mesh.test"
TOKEN = "sync-secret"
OPERATOR = Signer(bytes(range(32)))


def url_of(node_id: str) -> str:
    return f"http://{node_id}.peers.invalid:80"


def sign_manifest(node_ids, seq=1, exp=int(NOW) + 30 * 86400, signer=OPERATOR, name=BASE):
    nodes = [ClusterNode(n, url_of(n)) for n in node_ids]
    return cluster_manifest.sign(seq, exp, signer.public_key, name, nodes, signer)


class SiteTransport:
    """Routes ``http://<host>`` to a site (or a hostile handler) in memory."""

    def __init__(self):
        self.sites = {}
        self.handlers = {}
        self.cut = set()          # (from_id, to_host) pairs that fail
        self.requests = []

    def for_node(self, node_id: str) -> "_Bound":
        return _Bound(self, node_id)

    def deliver(self, source: str, method: str, url: str, headers: dict, body):
        parts = urlsplit(url)
        host = parts.netloc
        self.requests.append((source, method, url))
        if (source, host) in self.cut or host in self.cut:
            return defer.fail(PeerError(UNREACHABLE, "link cut"))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if host in self.handlers:
            return defer.maybeDeferred(self.handlers[host], method, path, headers, body)
        site = self.sites.get(host)
        if site is None:
            return defer.fail(PeerError(UNREACHABLE, f"no node at {host}"))
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 80))
        channel.makeConnection(transport)
        channel.dataReceived(request_bytes(method, path, body, headers))
        (response,) = parse_responses(transport.value())
        channel.connectionLost(None)
        return defer.succeed(HttpResponse(response.status, response.headers, response.body))


class _Bound:
    def __init__(self, transport: SiteTransport, node_id: str):
        self.transport, self.node_id = transport, node_id

    def request(self, method, url, headers, body):
        return self.transport.deliver(self.node_id, method, url, headers, body)


class FakeNode:
    def __init__(self, node_id, clock, transport: SiteTransport, *, manifest=None,
                 peers=(), token=TOKEN, budget=Budget(), fullset_interval=30.0,
                 store=None, operator_key=OPERATOR.public_key):
        self.node_id = node_id
        self.clock = clock
        self.store = store or MemoryStore(node_id=node_id)
        self.registry = CollectorRegistry()
        self.metrics = NodeMetrics(self.registry)
        settings = ClusterSettings(
            node_id=node_id, zones=(ZONE,), sync_token=token, base=BASE,
            operator_key=operator_key, initial_manifest=manifest,
            static_peers=tuple(peers), interval=3600.0, budget=budget,
            fullset_interval=fullset_interval)
        self.writes = WriteService(self.store, zones=(ZONE,), operator_key=operator_key,
                                   cluster_base=BASE, observe=self.metrics.observe_write)
        self.cluster = ClusterSync(self.store, clock, settings,
                                   transport=transport.for_node(node_id), writes=self.writes)
        auth = WriteAuth("open", clock=clock.seconds)
        self.http = make_site(store=self.store, writes=self.writes, clock=clock,
                              metrics=self.metrics, auth=auth)
        SyncApi(store=self.store, token=token,
                limiter=TokenBucketLimiter(1e6, 1e6, clock.seconds),
                current_manifest=self.cluster.current_manifest,
                index=self.cluster.index).mount(self.http)
        self.registry.register(SyncCollector(self.cluster))
        transport.sites[urlsplit(url_of(node_id)).netloc] = self.http.site

    def metric(self, name, **labels):
        return self.registry.get_sample_value(name, labels) or 0

    def state(self, peer_id):
        return self.cluster.anti_entropy.states[peer_id]

    def records(self) -> set:
        """Every live (name, value) pair: the set nodes must agree on."""
        now = self.clock.seconds()
        page = self.store.changes_after(_start(), 10_000, now=now + 10, tombstones=False)
        return {(c.name, c.value) for c in page.changes}

    def put(self, name, value, ttl=3600):
        self.store.put(name, value, expiry=self.clock.seconds() + ttl, now=self.clock.seconds())


def _start():
    from dmfdns.store.api import Cursor
    return Cursor()


def make_cluster(node_ids=("n1", "n2", "n3"), **options):
    clock = task.Clock()
    clock.advance(NOW)
    transport = SiteTransport()
    manifest = sign_manifest(node_ids)
    nodes = {n: FakeNode(n, clock, transport, manifest=manifest, **options) for n in node_ids}
    return clock, transport, nodes


def run(clock, nodes, seconds=2.0, ticks=1):
    """Advance time past the stable horizon and tick every node ``ticks`` times."""
    for _ in range(ticks):
        clock.advance(seconds)
        for node in nodes:
            node.cluster.tick()


def json_response(status, body, extended=False):
    headers = {"x-dmfdns-sync": "1"} if extended else {}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, headers, raw)
