"""The client's view of the mesh: one reader and one writer built from the user's settings.

Reads of names in the cluster's zones go to the union reader over the nodes' DNS endpoints,
other names to the resolver pool (when resolvers are configured; otherwise the nodes answer
everything they can). Writes go to every node's HTTP API through the quorum fan-out writer,
or, for a user with a registered TSIG key, as signed DNS UPDATEs to the home node. Claims
(first contact) go as unsigned UPDATEs to the nodes' DNS endpoints.
Node DNS endpoints must be IP literals (``host:port``); a manifest naming a host is skipped
with a note rather than resolved through an unverified path.
"""

from dataclasses import dataclass, field

from ..dns import tsig
from ..outbound.client import HttpClient
from .dnsquery import DEFAULT_TIMEOUT as DNS_TIMEOUT, DnsClient, parse_server
from .dnsupdate import TsigWriter, UpdateSender
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
    updates: object = None          # an UpdateSender (claims, TSIG writes)
    claim_servers: list = field(default_factory=list)   # node DNS servers taking claims
    claim_zones: tuple = ()         # the zones those servers serve

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
    updates = UpdateSender(client, reactor)
    writer = None
    if profile.tsig_key_name:
        writer = _tsig_writer(profile, updates)
    elif profile.nodes:
        http = HttpClient(reactor, timeout=http_timeout, tls=tls, max_per_origin=8)
        writer = FanoutWriter([HttpNode(reactor, node.http, token=profile.token,
                                        timeout=http_timeout, client=http)
                               for node in profile.nodes])
    claim_servers = list(node_servers)
    if profile.tsig_server and parse_server(profile.tsig_server) not in claim_servers:
        claim_servers.append(parse_server(profile.tsig_server))
    return Network(reader, writer, notes, updates, [s for s in claim_servers if s],
                   tuple(zones))


def _tsig_writer(profile: Profile, updates: UpdateSender) -> TsigWriter:
    server = parse_server(profile.tsig_server or "")
    if server is None:
        raise NetworkError(f"TSIG server {profile.tsig_server!r} is not an IP address with "
                           "optional :port")
    try:
        key = tsig.TsigKey(profile.tsig_key_name.rstrip(".").lower(),
                           tsig.algorithm_name(profile.tsig_algorithm) or "",
                           bytes.fromhex(profile.tsig_secret or ""))
    except ValueError as exc:
        raise NetworkError(f"unusable TSIG key in the profile: {exc}") from None
    return TsigWriter(updates, server, profile.tsig_zone or profile.zone, key)
