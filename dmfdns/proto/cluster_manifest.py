"""The cluster manifest, ``v=dmp1;t=cluster;`` (docs/wire-format.md §4.5).

Body: ``DMPCL01 || seq u64 || exp u64 || operator_spk 32 || name_len u8 || cluster_name ||
node_count u8`` then per node ``id_len u8 || node_id (ASCII) || http_len u16 || http_endpoint
|| dns_len u16 || dns_endpoint`` (``dns_len`` 0 = absent); then an Ed25519 signature by the
operator key. The wire is at most 1200 characters.

Parse order follows the reference: prefix, length cap, strict base64, the signature checked
against the caller's pinned key *before* the body is parsed, then the body, then the embedded
key must equal the pinned one. ``decode`` also accepts ``operator_key=None`` to verify against
the embedded key, which is only meaningful for inspection: trust comes from pinning.
"""

import struct
from dataclasses import dataclass

from . import b64, names, prefixes
from .binreader import Reader
from .signing import PUBLIC_KEY_LEN, Signer, split_signed_value, verify

MAX_NAME = 64
MAX_NODES = 32
MAX_NODE_ID = 16
MAX_HTTP_ENDPOINT = 128
MAX_DNS_ENDPOINT = 64
MAX_U64 = 2**64 - 1
MAX_AHEAD = 5 * 365 * 86400  # exp may lie at most 5 years after now (section 1.5)
MAX_WIRE = prefixes.MAX_SIGNED_WIRE
_FIXED = struct.Struct(">7sQQ32s")  # magic, seq, exp, operator_spk
_KEY_AT = _FIXED.size - PUBLIC_KEY_LEN


@dataclass(frozen=True)
class ClusterNode:
    node_id: str
    http_endpoint: str
    dns_endpoint: str | None = None


@dataclass(frozen=True)
class ClusterManifest:
    seq: int
    exp: int
    operator_spk: bytes
    cluster_name: str
    nodes: tuple[ClusterNode, ...]


def sign(seq: int, exp: int, operator_spk: bytes, cluster_name: str, nodes,
         signer: Signer) -> str:
    """The TXT string of a manifest signed by the operator ``signer``.

    ``cluster_name`` loses one trailing dot; a node's empty ``dns_endpoint`` means absent.
    """
    if not (0 <= seq <= MAX_U64 and 0 <= exp <= MAX_U64):
        raise ValueError("seq and exp are u64")
    if len(operator_spk) != PUBLIC_KEY_LEN or bytes(operator_spk) != signer.public_key:
        raise ValueError("operator_spk is not the signer's public key")
    name = names.ldh_name(cluster_name)
    if name is None or len(name) > MAX_NAME:
        raise ValueError(f"cluster name {cluster_name!r} is not a DNS name of at most 64 bytes")
    nodes = list(nodes)
    if not 1 <= len(nodes) <= MAX_NODES:
        raise ValueError("a cluster manifest lists 1..32 nodes")
    if len({n.node_id for n in nodes}) != len(nodes):
        raise ValueError("node ids must be unique")
    body = (_FIXED.pack(prefixes.MAGIC_CLUSTER, seq, exp, bytes(operator_spk))
            + bytes([len(name)]) + name.encode("ascii") + bytes([len(nodes)])
            + b"".join(_encode_node(n) for n in nodes))
    wire = prefixes.CLUSTER + b64.encode(body + signer.sign(body))
    if len(wire) > MAX_WIRE:
        raise ValueError(f"cluster manifest is {len(wire)} characters; the cap is {MAX_WIRE}")
    return wire


def _encode_node(node: ClusterNode) -> bytes:
    if not (node.node_id.isascii() and 1 <= len(node.node_id) <= MAX_NODE_ID):
        raise ValueError(f"node id {node.node_id!r} is not 1..16 ASCII characters")
    http = node.http_endpoint.encode("utf-8")
    dns = (node.dns_endpoint or "").encode("utf-8")
    if not 1 <= len(http) <= MAX_HTTP_ENDPOINT:
        raise ValueError(f"node {node.node_id}: http endpoint is 1..128 bytes")
    if len(dns) > MAX_DNS_ENDPOINT:
        raise ValueError(f"node {node.node_id}: dns endpoint is at most 64 bytes")
    return (bytes([len(node.node_id)]) + node.node_id.encode("ascii")
            + struct.pack(">H", len(http)) + http + struct.pack(">H", len(dns)) + dns)


def decode(wire, operator_key: bytes | None = None) -> ClusterManifest | None:
    """Verify against ``operator_key`` (None: the embedded key), then parse; no time rules."""
    if operator_key is not None and not isinstance(operator_key, (bytes, bytearray)):
        return None
    parts = split_signed_value(wire, prefixes.CLUSTER, MAX_WIRE)
    if parts is None:
        return None
    body, (signature,) = parts
    key = body[_KEY_AT:_FIXED.size] if operator_key is None else bytes(operator_key)
    if not verify(key, signature, body):
        return None
    record = _parse_body(body)
    if record is None or record.operator_spk != key:
        return None
    return record


def _parse_body(body: bytes) -> ClusterManifest | None:
    reader = Reader(body)
    if reader.take(len(prefixes.MAGIC_CLUSTER)) != prefixes.MAGIC_CLUSTER:
        return None
    seq, exp, spk = reader.u64(), reader.u64(), reader.take(PUBLIC_KEY_LEN)
    name = _read_name(reader)
    count = reader.u8()
    if name is None or count is None or count > MAX_NODES:
        return None
    nodes = []
    for _ in range(count):
        node = _read_node(reader)
        if node is None:
            return None
        nodes.append(node)
    if not reader.done or len({n.node_id for n in nodes}) != len(nodes):
        return None
    return ClusterManifest(seq, exp, spk, name, tuple(nodes))


def _read_name(reader: Reader) -> str | None:
    raw = reader.prefixed(1)
    if raw is None or not 1 <= len(raw) <= MAX_NAME + 1:
        return None
    if len(raw) == MAX_NAME + 1 and not raw.endswith(b"."):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return names.ldh_name(text)


def _read_node(reader: Reader) -> ClusterNode | None:
    id_len = reader.u8()
    if id_len is None or not 1 <= id_len <= MAX_NODE_ID:
        return None
    node_id = reader.text(id_len, "ascii")
    http_len = reader.u16()
    if node_id is None or http_len is None or not 1 <= http_len <= MAX_HTTP_ENDPOINT:
        return None
    http = reader.text(http_len, "utf-8")
    dns_len = reader.u16()
    if http is None or dns_len is None or dns_len > MAX_DNS_ENDPOINT:
        return None
    dns = reader.text(dns_len, "utf-8")
    if dns is None:
        return None
    return ClusterNode(node_id, http, dns or None)


def time_problem(record: ClusterManifest, now: int) -> str | None:
    if record.exp < now:
        return "expired"
    if record.exp - now > MAX_AHEAD:
        return "expiry more than 5 years ahead"
    return None


def parse_and_verify(wire, operator_key: bytes, *, now: int,
                     expected_cluster_name: str | None = None) -> ClusterManifest | None:
    """``decode`` against the pinned ``operator_key`` + time rules + optional name binding."""
    if operator_key is None:
        return None
    record = decode(wire, operator_key)
    if record is None or time_problem(record, now) is not None:
        return None
    if expected_cluster_name is not None and not _same_cluster(record, expected_cluster_name):
        return None
    return record


def _same_cluster(record: ClusterManifest, expected: str) -> bool:
    return isinstance(expected, str) and names.same_name(record.cluster_name, expected)
