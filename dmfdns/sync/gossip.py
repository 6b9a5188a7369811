"""The cluster manifest a node follows, and how a newer one is adopted (docs/decisions.md §6.1).

A manifest is offered from four places: the config's ``manifest_file``, the node's own store
at ``cluster.<base>`` (an operator POSTs a new one to any node; anti-entropy copies it), a
peer's ``/v1/sync/cluster-manifest`` (gossip), and DNS at ``cluster.<base>`` (bootstrap). The
rule is one: adopt only a manifest that verifies against the pinned operator key, names this
cluster, has not expired, and has a strictly higher ``seq`` than the one in force. Anything
else is refused with a reason (counted once per distinct wire) and the old manifest stays.

The adopted wire is kept in the store's meta (so a restart resumes it) and published at
``cluster.<base>`` (so DNS serves it and it replicates), replacing older manifests there.
Peers are the manifest's nodes minus this node, matched by node id.
"""

import hashlib
from collections import OrderedDict
from typing import Callable

from ..proto import cluster_manifest, names, owners
from ..proto.cluster_manifest import ClusterManifest

META_KEY = "cluster:manifest"
ADOPTED = "adopted"
SAME = "same"
INVALID = "invalid"            # bad signature, unknown operator key, malformed body
EXPIRED = "expired"
TOO_FAR = "too_far"            # expiry more than 5 years ahead
WRONG_CLUSTER = "wrong_cluster"
ROLLBACK = "rollback"          # seq lower than the manifest in force
REASONS = (INVALID, EXPIRED, TOO_FAR, WRONG_CLUSTER, ROLLBACK)
_REMEMBERED = 256


class ManifestKeeper:
    """The manifest in force for ``node_id`` in cluster ``base``, pinned to
    ``operator_key``. ``on_change(manifest)`` is called after each adoption."""

    def __init__(self, store, *, node_id: str, base: str, operator_key: bytes,
                 max_ttl: int = 86400, on_change: Callable | None = None):
        self.store = store
        self.node_id = node_id
        self.base = base
        self.owner = owners.cluster(base)
        self.operator_key = operator_key
        self.max_ttl = max_ttl
        self.on_change = on_change
        self.current: tuple[str, ClusterManifest] | None = None
        self.rejected = {reason: 0 for reason in REASONS}
        self.adoptions = 0
        self._judged: OrderedDict = OrderedDict()

    # --- offers -----------------------------------------------------------------------------

    def resume(self, now: float) -> None:
        """Adopt what was in force before a restart, then anything newer in the store."""
        saved = self.store.meta_get(META_KEY)
        if saved:
            self.offer(saved.decode("ascii", "replace"), now)
        self.check_store(now)

    def check_store(self, now: float) -> None:
        for value in self.store.get(self.owner, now):
            self.offer(value.value, now)

    def offer(self, wire: str, now: float) -> str:
        """Judge ``wire``: ``"adopted"``, ``"same"`` or a refusal reason."""
        result = self._judge(wire, now)
        if result in REASONS:
            key = hashlib.sha256(wire.encode("utf-8", "replace")).digest()
            if key not in self._judged:      # count each distinct refused wire once
                self.rejected[result] += 1
            self._judged[key] = result
            self._judged.move_to_end(key)
            while len(self._judged) > _REMEMBERED:
                self._judged.popitem(last=False)
        return result

    def _judge(self, wire: str, now: float) -> str:
        record = cluster_manifest.decode(wire, self.operator_key)
        if record is None:
            return INVALID
        problem = cluster_manifest.time_problem(record, int(now))
        if problem == "expired":
            return EXPIRED
        if problem:
            return TOO_FAR
        if names.folded(record.cluster_name) != self.base:
            return WRONG_CLUSTER
        if self.current is not None:
            seq = self.current[1].seq
            if record.seq == seq:
                return SAME
            if record.seq < seq:
                return ROLLBACK
        self._adopt(wire, record, now)
        return ADOPTED

    def _adopt(self, wire: str, record: ClusterManifest, now: float) -> None:
        self.current = (wire, record)
        self.adoptions += 1
        self.store.meta_set(META_KEY, wire.encode("ascii"))
        self.publish(now)
        if self.on_change is not None:
            self.on_change(record)

    # --- what the node does with it ---------------------------------------------------------

    def publish(self, now: float) -> None:
        """Keep the manifest in force at ``cluster.<base>`` (refreshing its expiry once half
        of it has passed) and retire older manifests there."""
        if self.current is None:
            return
        wire, record = self.current
        life = min(self.max_ttl, record.exp - now)
        if life <= 0:
            return
        stored = {v.value: v.expiry for v in self.store.get(self.owner, now)}
        if stored.get(wire, 0) - now < life / 2:
            self.store.put(self.owner, wire, expiry=now + life, now=now)
        for value in stored:
            older = cluster_manifest.decode(value, self.operator_key)
            if value != wire and older is not None and older.seq < record.seq:
                self.store.delete(self.owner, value, now=now)

    def in_force(self, now: float) -> tuple[str, ClusterManifest] | None:
        """The adopted ``(wire, manifest)`` unless it has expired since."""
        if self.current is None or self.current[1].exp < now:
            return None
        return self.current

    def peers(self) -> list:
        """The manifest's nodes other than this one (``ClusterNode``s)."""
        if self.current is None:
            return []
        return [node for node in self.current[1].nodes if node.node_id != self.node_id]

    def lists_self(self) -> bool:
        return self.current is not None and any(
            node.node_id == self.node_id for node in self.current[1].nodes)
