"""The client's view of the mesh: one reader and one writer built from the user's settings.

Reads of names in the cluster's zones go to the union reader over the nodes' DNS endpoints,
other names to the resolver pool (when resolvers are configured; otherwise the nodes answer
everything they can). Writes go to every node's HTTP API through the quorum fan-out writer.
Node DNS endpoints must be IP literals (``host:port``); a manifest naming a host is skipped
with a note rather than resolved through an unverified path.
"""

from dataclasses import dataclass, field

from ..outbound.client import HttpClient
from .dnsquery import DEFAULT_TIMEOUT as DNS_TIMEOUT, DnsClient, parse_server
from .reader import RoutedReader, UnionReader
from .resolver import ResolverPool
from .state import Profile
from .writer import DEFAULT_TIMEOUT as HTTP_TIMEOUT, FanoutWriter, HttpNode


class NetworkError(Exception):
    """The settings name no usable node or resolver (one line for the CLI)."""


@dataclass
class Network:
    reader: object
    writer: object
    notes: list = field(default_factory=list)

    async def finish(self) -> None:
        """Let background writes reach the remaining nodes, then close connections."""
        if self.writer is not None:
            await self.writer.drain()
            await self.writer.close()


def build(reactor, profile: Profile, *, dns_timeout: float = DNS_TIMEOUT,
          http_timeout: float = HTTP_TIMEOUT, tls=None) -> Network:
    """``tls``: the outbound ``TlsPolicy`` for ``https://`` nodes (None: the system trust
    store, which OpenSSL lets ``SSL_CERT_FILE`` replace)."""
    notes = []
    client = DnsClient(reactor, timeout=dns_timeout)
    node_servers = []
    for node in profile.nodes:
        if node.dns:
            server = parse_server(node.dns)
            if server is None:
                notes.append(f"node DNS endpoint {node.dns!r} is not an IP:port; skipped")
            else:
                node_servers.append(server)
    resolvers = []
    for text in profile.resolvers:
        server = parse_server(text)
        if server is None:
            raise NetworkError(f"resolver {text!r} is not an IP address with optional :port")
        resolvers.append(server)
    union = UnionReader(node_servers, client, reactor) if node_servers else None
    pool = ResolverPool(resolvers, client, reactor) if resolvers else None
    if union is None and pool is None:
        raise NetworkError("no DNS server to read from: give a node with a DNS endpoint "
                           "or a resolver")
    zones = [profile.zone] + [z for z in (profile.identity_domain, profile.cluster_base) if z]
    reader = RoutedReader(zones, union, pool) if union is not None else pool
    writer = None
    if profile.nodes:
        http = HttpClient(reactor, timeout=http_timeout, tls=tls, max_per_origin=8)
        writer = FanoutWriter([HttpNode(reactor, node.http, token=profile.token,
                                        timeout=http_timeout, client=http)
                               for node in profile.nodes])
    return Network(reader, writer, notes)
