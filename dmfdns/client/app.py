"""Glue the client commands share: the unlocked session, the network, the cluster refresh.

``connect`` builds the reader and writer from the user's settings and, when a cluster is
pinned (``cluster_base`` + ``cluster_operator``), first installs a newer verified manifest's
node list (strictly higher seq only, docs/wire-format.md §9.4). ``CLIENT_ERRORS`` are the
exceptions a command turns into one line and a non-zero exit.
"""

from . import discovery, network
from .identity_ops import IdentityError
from .parts import MessageTooLong
from .resolver import ReadError
from .runner import Interrupted
from .send import SendError
from .state import NodeEndpoint, StateError
from .writer import WriteError

CLIENT_ERRORS = (StateError, IdentityError, SendError, WriteError, ReadError,
                 network.NetworkError, discovery.DiscoveryError, MessageTooLong, Interrupted)


def parse_node(text: str) -> NodeEndpoint:
    """``HTTP_URL[,DNS_HOST:PORT]`` as given to ``--node``."""
    http, _, dns = text.partition(",")
    http, dns = http.strip(), dns.strip()
    if not (http.startswith("http://") or http.startswith("https://")):
        raise ValueError(f"--node {text!r}: the HTTP endpoint must start with http:// or "
                         "https://")
    return NodeEndpoint(http=http.rstrip("/"), dns=dns or None)


async def connect(reactor, profile, now: int) -> network.Network:
    """The network for ``profile``; a newer pinned cluster manifest updates its nodes."""
    net = network.build(reactor, profile)
    if profile.cluster_base and profile.cluster_operator:
        cluster = await discovery.pinned_cluster(net.reader, profile.cluster_base,
                                                 profile.cluster_operator, now,
                                                 min_seq=profile.cluster_seq)
        if cluster is not None:
            profile.nodes, profile.cluster_seq = cluster.nodes, cluster.manifest.seq
            await net.finish()
            net = network.build(reactor, profile)
            net.notes.append(f"installed cluster manifest seq {cluster.manifest.seq} "
                             f"({len(profile.nodes)} nodes)")
    return net


def require_writer(net) -> None:
    if net.writer is None:
        raise network.NetworkError("no node to write to: give --node at identity init")
