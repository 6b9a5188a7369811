"""Finding a cluster's nodes from pinned keys (docs/wire-format.md §9.4,
docs/compatibility.md §4.2).

``_dmp.<domain>`` holds bootstrap records signed by the domain's zone operator (pinned out of
band): the one with the highest seq that verifies and names the domain wins; its entries, by
priority, name cluster base domains and the operator key of each. ``cluster.<base>`` holds
manifests signed by that operator: the highest seq that verifies, is unexpired and names the
base wins, and lists the nodes' HTTP and DNS endpoints. A manifest is installed only when its
seq is strictly higher than the one installed before (rollback resistance).
"""

from dataclasses import dataclass

from ..proto import bootstrap, cluster_manifest, owners
from .state import NodeEndpoint


class DiscoveryError(Exception):
    """No verifiable bootstrap or cluster manifest was found (one line for the CLI)."""


@dataclass(frozen=True)
class Cluster:
    base: str
    operator_spk: bytes
    manifest: cluster_manifest.ClusterManifest

    @property
    def nodes(self) -> list[NodeEndpoint]:
        return [NodeEndpoint(http=n.http_endpoint, dns=n.dns_endpoint, node_id=n.node_id)
                for n in self.manifest.nodes]


async def best_manifest(reader, base: str, operator_spk: bytes, now: int,
                        min_seq: int = 0) -> cluster_manifest.ClusterManifest | None:
    """The highest-seq verified manifest at ``cluster.<base>`` with seq > ``min_seq``."""
    best = None
    for value in await reader.read(owners.cluster(base)):
        record = cluster_manifest.parse_and_verify(value, operator_spk, now=now,
                                                   expected_cluster_name=base)
        if record is not None and record.seq > min_seq and (best is None
                                                            or record.seq > best.seq):
            best = record
    return best


async def best_bootstrap(reader, domain: str, signer_spk: bytes,
                         now: int) -> bootstrap.Bootstrap | None:
    best = None
    for value in await reader.read(owners.bootstrap(domain)):
        record = bootstrap.parse_and_verify(value, signer_spk, now=now,
                                            expected_user_domain=domain)
        if record is not None and (best is None or record.seq > best.seq):
            best = record
    return best


async def discover(reader, domain: str, signer_spk: bytes, now: int) -> Cluster:
    """From ``_dmp.<domain>`` to the first cluster (by priority) with a verified manifest."""
    record = await best_bootstrap(reader, domain, signer_spk, now)
    if record is None:
        raise DiscoveryError(f"no bootstrap record at {owners.bootstrap(domain)} verifies "
                             "with the pinned key")
    for entry in record.entries:
        manifest = await best_manifest(reader, entry.cluster_base_domain, entry.operator_spk,
                                       now)
        if manifest is not None:
            return Cluster(entry.cluster_base_domain, entry.operator_spk, manifest)
    raise DiscoveryError(f"no cluster listed at {owners.bootstrap(domain)} has a verifiable "
                         "manifest")


async def pinned_cluster(reader, base: str, operator_spk: bytes, now: int,
                         min_seq: int = 0) -> Cluster | None:
    """The cluster at ``cluster.<base>`` if a manifest newer than ``min_seq`` verifies."""
    manifest = await best_manifest(reader, base, operator_spk, now, min_seq)
    return None if manifest is None else Cluster(base, operator_spk, manifest)
