"""Several real nodes in one process on one memory reactor, their peers reached without sockets.

Each ``SyncNode`` is what ``make_service`` builds from a loopback configuration: its LMDB
store under the test's directory, its real twisted.web site with ``/v1/records`` and
``/v1/sync/*``, its ``ClusterSync`` and metrics. All of them share one memory reactor (so
time is the test's to advance and nothing binds a socket), and the peer transport is
injected: ``SiteTransport`` takes a request into the other node's site over a
StringTransport and brings the response bytes back, so the whole HTTP path (auth, JSON,
headers, status codes) is exercised deterministically. Links can be cut, and a peer URL can
be served by a hostile handler instead of a node.
"""


import json
import pathlib
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from dmfdns.node import make_service
from dmfdns.proto import cluster_manifest
from dmfdns.proto.cluster_manifest import ClusterNode
from dmfdns.proto.signing import Signer
from dmfdns.store.api import Cursor
from dmfdns.sync.anti_entropy import Budget
from dmfdns.sync.peer_client import HttpResponse, PeerError, UNREACHABLE
from http_support import parse_responses, request_bytes
from node_support import node_config

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
        self.clocks = {}          # host -> the memory reactor its site answers on
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
        settle(self.clocks[host])       # a digest or pull answer is read in slices
        (response,) = parse_responses(transport.value())
        channel.connectionLost(None)
        return defer.succeed(HttpResponse(response.status, response.headers, response.body))


class _Bound:
    def __init__(self, transport: SiteTransport, node_id: str):
        self.transport, self.node_id = transport, node_id

    def request(self, method, url, headers, body):
        return self.transport.deliver(self.node_id, method, url, headers, body)


class SyncNode:
    """One node from the real ``make_service``, its data under ``root/<node_id>`` unless
    ``data_dir`` is given. ``start()`` and ``stop()`` are the node's own (``stop`` closes
    its LMDB like a process exiting, so a new ``SyncNode`` on the same directory is a
    restart)."""

    def __init__(self, root, node_id, clock, transport: SiteTransport, *, manifest=None,
                 peers=(), token=TOKEN, budget=Budget(), fullset_interval=30.0,
                 data_dir=None, operator_key=OPERATOR.public_key):
        self.node_id = node_id
        self.clock = clock
        root = pathlib.Path(root)
        cluster = {"base": BASE, "operator_key": operator_key.hex(), "sync_token": token,
                   "peers": list(peers), "sync_interval": 3600,
                   "fullset_interval": fullset_interval, "page_limit": budget.page_limit,
                   "max_pages_per_tick": budget.max_pages,
                   "max_records_per_tick": budget.max_records, "tick_budget": budget.seconds}
        if manifest is not None:
            manifest_file = root / f"{node_id}-manifest.txt"
            manifest_file.write_text(manifest + "\n")
            cluster["manifest_file"] = str(manifest_file)
        config = node_config(root, data_dir or root / node_id, node_id=node_id,
                             http_options={"rate_limit": 0}, cluster=cluster)
        self.node = make_service(config, clock, peer_transport=transport.for_node(node_id))
        self.store = self.node.store
        self.cluster = self.node.cluster
        transport.sites[urlsplit(url_of(node_id)).netloc] = self.node.http.site
        transport.clocks[urlsplit(url_of(node_id)).netloc] = clock

    def start(self) -> None:
        self.node.startService()

    def stop(self) -> None:
        self.node.stopService()

    def metric(self, name, **labels):
        return self.node.metrics.registry.get_sample_value(name, labels) or 0

    def state(self, peer_id):
        return self.cluster.anti_entropy.states[peer_id]

    def records(self) -> set:
        """Every live (name, value) pair: the set nodes must agree on."""
        now = self.clock.seconds()
        page = self.store.changes_after(Cursor(), 10_000, now=now + 10, tombstones=False)
        return {(c.name, c.value) for c in page.changes}

    def put(self, name, value, ttl=3600):
        self.store.put(name, value, expiry=self.clock.seconds() + ttl, now=self.clock.seconds())


class ClusterReactor(MemoryReactorClock):
    """The one reactor a test's nodes share: a clock, and listeners that bind nothing."""

    def __init__(self):
        super().__init__()
        self._ports = iter(range(40000, 50000))
        self.advance(NOW)

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        return _Port("UDP", interface, port or next(self._ports))

    def listenTCP(self, port, factory, backlog=50, interface=""):
        super().listenTCP(port, factory, backlog, interface)
        return _Port("TCP", interface, port or next(self._ports))


class _Port:
    def __init__(self, kind, host, port):
        self.address = IPv4Address(kind, host, port)

    def getHost(self):
        return self.address

    def stopListening(self):
        return None


def make_cluster(root, node_ids=("n1", "n2", "n3"), **options):
    """Nodes ``node_ids`` under ``root`` on one new reactor, each adopting a manifest that
    lists them all; not started."""
    clock = ClusterReactor()
    transport = SiteTransport()
    manifest = sign_manifest(node_ids)
    nodes = {n: SyncNode(root, n, clock, transport, manifest=manifest, **options)
             for n in node_ids}
    return clock, transport, nodes


def run(clock, nodes, seconds=2.0, ticks=1):
    """Advance time past the stable horizon and tick every node ``ticks`` times."""
    for _ in range(ticks):
        clock.advance(seconds)
        for node in nodes:
            node.cluster.tick()
            settle(clock)


def settle(clock, turns: int = 100_000) -> None:
    """Run what is due now, turn after turn, as a real reactor would: sync gives the
    reactor a turn between slices of its work (``task.deferLater(clock, 0)``)."""
    for _ in range(turns):
        now = clock.seconds()
        if not any(call.getTime() <= now for call in clock.getDelayedCalls()):
            return
        clock.advance(0)


def json_response(status, body, extended=False):
    headers = {"x-dmfdns-sync": "1"} if extended else {}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, headers, raw)
