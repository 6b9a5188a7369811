"""A dmfdns node and a reference ``dnsmesh`` 0.7.5 node in one cluster converge (docs/decisions.md
§1).

The reference node runs from its venv (``python -m dmp.server``, configured by environment
variables: ``DMP_SYNC_PEERS`` naming the dmfdns node, ``DMP_SYNC_PEER_TOKEN``, loopback DNS
and HTTP ports, SQLite under ``tmp_path``); the dmfdns node is a ``dmfdns serve`` subprocess
whose ``[cluster] peers`` names the reference node, with the same sync token. Valid signed
records built with ``dmfdns.proto`` are written to each side over HTTP; both must hold
exactly the union, read with each node's HTTP API, its sync digest and over DNS. Then two
``dnsmesh`` users, one on each node, exchange messages across the cluster.

The reference node's ``http.server`` speaks HTTP/1.0 and closes the connection after every
response; ``test_a_peer_speaking_http_1_0_gets_every_call_answered`` holds dmfdns's peer
transport to that without the reference.
"""

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import pytest_twisted
from twisted.internet import reactor

from dmfdns.proto import (chunk, cluster_manifest, codec, heartbeat, identity, owners, prekey,
                          slot_manifest)
from dmfdns.proto.cluster_manifest import ClusterNode
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.signing import sha256
from dmfdns.store.api import Change, ChangesPage, Cursor
from dmfdns.store.changelog import format_cursor
from dmfdns.sync import wire
from dmfdns.outbound.client import HttpClient
from cluster_procs import OPERATOR, TOKEN, NodeProc, http_get, wait_until
from dnsmesh_support import (ZONE, DnsmeshUser, ReferenceNode, get_values, post_record,
                             printed_messages, reference_bin, txt_values)

CONVERGE = 30.0


@pytest.fixture
def mixed(tmp_path):
    """(dmfdns node, reference node), each listing the other as its only sync peer."""
    reference_bin()
    reference = ReferenceNode(tmp_path, sync_token=TOKEN, sync_interval=1.0)
    ours = NodeProc(tmp_path, "dmfdns", cluster=f'peers = ["{reference.url}"]')
    reference.peers = [ours.url]
    ours.write_config()
    try:
        # The reference first, so dmfdns's first sync tick already finds it listening.
        reference.start()
        reference.wait_ready()
        ours.start()
        ours.wait_ready()
        yield ours, reference
    finally:
        ours.kill()
        reference.kill()


# --- records ---------------------------------------------------------------------------------

def _keys(label: str) -> UserKeys:
    return UserKeys.from_x25519_private(sha256(label.encode()))


def _add(records: dict, owner: str, value: str) -> None:
    records.setdefault(owner, set()).add(value)


def _user_records(username: str, recipient: UserKeys, now: int) -> dict[str, set[str]]:
    """An identity, and a slot manifest with its chunks for a message to ``recipient``."""
    keys = _keys(username)
    records: dict[str, set[str]] = {}
    _add(records, owners.identity_hashed(username, ZONE),
         identity.sign(username, keys.x25519_public, keys.ed25519_public, now, keys.signer))
    msg_id = sha256(f"msg {username}".encode())[:16]
    outer = f"an outer message from {username} ".encode() * 12
    blobs = codec.encode(outer)
    k, n = codec.plan(len(outer))
    key = owners.message_key(msg_id, recipient.user_id, keys.ed25519_public)
    for index, blob in enumerate(blobs):
        _add(records, owners.chunk(index, key, ZONE), chunk.encode(blob))
    _add(records, owners.slot(owners.slot_for(msg_id), recipient.user_id, ZONE),
         slot_manifest.sign(msg_id, keys.ed25519_public, recipient.user_id, n, k, 0, now,
                            now + 3600, codec.chunk_hashes(blobs), keys.signer))
    return records


def _side_records(tag: str, shared: UserKeys, now: int) -> dict[str, set[str]]:
    """What one side gets written: three users' records, two prekeys of one user whose pool
    is written on both sides (one name, values from both), and a plain note."""
    records: dict[str, set[str]] = {}
    recipient = _keys("recipient")
    for i in range(3):
        for owner, values in _user_records(f"{tag}{i}", recipient, now).items():
            for value in values:
                _add(records, owner, value)
    for i in range(2):
        prekey_id = int.from_bytes(sha256(f"{tag} prekey {i}".encode())[:4], "big") or 1
        public = sha256(f"{tag} prekey public {i}".encode())
        _add(records, owners.prekeys("shared", ZONE),
             prekey.sign(prekey_id, public, now + 3600, shared.signer))
    _add(records, f"note-{tag}.{ZONE}", f"plain text written to {tag}")
    return records


def _write(node_url: str, records: dict[str, set[str]]) -> None:
    for owner, values in records.items():
        for value in values:
            assert post_record(node_url, owner, value) == 201


def _union(*sides: dict[str, set[str]]) -> dict[str, set[str]]:
    union: dict[str, set[str]] = {}
    for side in sides:
        for owner, values in side.items():
            union.setdefault(owner, set()).update(values)
    return union


def _digest_set(url: str) -> set[tuple[str, str]]:
    """Every (name, value hash) a node's ``/v1/sync/digest`` lists, as a reference peer
    reads it."""
    entries, cursor = set(), "0::"
    while True:
        status, data = http_get(f"{url}/v1/sync/digest?cursor={cursor}&limit=1000", token=TOKEN)
        assert status == 200, data
        page = json.loads(data)
        entries |= {(e["name"], e["hash"]) for e in page["records"]}
        if not page["has_more"]:
            return entries
        cursor = page["next_cursor"]


def _holds_exactly(url: str, expected: dict[str, set[str]]) -> bool:
    return all(get_values(url, owner) == values for owner, values in expected.items())


def _sync_troubles(node: NodeProc) -> dict[str, float]:
    """dmfdns's sync records rejected and failed calls, by ``family:reason``, nonzero only.
    A timeout is left out: on a loaded machine it says nothing about the peer's shapes."""
    _, data = http_get(node.url + "/metrics")
    troubles = {}
    for line in data.decode().splitlines():
        match = re.match(r'dmfdns_sync_(records_rejected|errors)_total\{.*reason="(\w+)"\} '
                         r'(\S+)$', line)
        if match and match[2] != "timeout" and float(match[3]):
            key = f"{match[1]}:{match[2]}"
            troubles[key] = troubles.get(key, 0) + float(match[3])
    return troubles


# --- the cluster -----------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.ci
def test_a_dmfdns_node_and_a_dnsmesh_node_converge_to_the_union(mixed):
    ours, reference = mixed
    now, shared = int(time.time()), _keys("shared")
    on_ours, on_reference = _side_records("d", shared, now), _side_records("r", shared, now)
    _add(on_ours, owners.identity_hashed("shared", ZONE),
         identity.sign("shared", shared.x25519_public, shared.ed25519_public, now,
                       shared.signer))
    _write(ours.url, on_ours)
    _write(reference.url, on_reference)
    union = _union(on_ours, on_reference)
    assert len(union[owners.prekeys("shared", ZONE)]) == 4

    took = wait_until(lambda: _holds_exactly(ours.url, union)
                      and _holds_exactly(reference.url, union), CONVERGE)
    print(f"\nmixed cluster: {sum(map(len, union.values()))} values identical on both nodes "
          f"{took:.1f} s after the writes")

    expected = {(owner, sha256(v.encode()).hex()) for owner, values in union.items()
                for v in values}
    # dmfdns lists a change in its digest once it is past the store's 1 s stable horizon
    # (docs/cluster.md), so the digests may trail the GETs by a moment.
    wait_until(lambda: _digest_set(ours.url) == expected
               and _digest_set(reference.url) == expected, CONVERGE)
    for owner, values in union.items():
        for node in (ours, reference):
            rcode, served = txt_values(node.dns_port, owner)
            assert rcode == "NOERROR" and sorted(served) == sorted(values), (node, owner)
    assert _sync_troubles(ours) == {}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.ci
def test_dnsmesh_users_on_either_node_message_each_other_across_the_cluster(mixed, tmp_path):
    """alice knows only the reference node, bob only the dmfdns node; what one writes
    reaches the other's node by anti-entropy."""
    ours, reference = mixed
    alice = DnsmeshUser(tmp_path / "alice", "alice", dns_port=reference.dns_port,
                        http_port=reference.http_port)
    bob = DnsmeshUser(tmp_path / "bob", "bob", dns_port=ours.dns_port,
                      http_port=ours.http_port)
    for user in (alice, bob):
        user.init()
        user.run("identity", "publish")
    for user, node in ((alice, ours), (bob, reference)):
        owner = owners.identity_hashed(user.username, ZONE)
        wait_until(lambda: get_values(node.url, owner), CONVERGE)
    alice.run("identity", "fetch", "bob@mesh.test", "--add")
    bob.run("identity", "fetch", "alice@mesh.test", "--add")

    alice.run("send", "bob@mesh.test", "from the dnsmesh node to the dmfdns node")
    bob.run("send", "alice@mesh.test", "and back again")

    def reads(user, text):
        return lambda: printed_messages(user.run("recv").stdout) == [text]
    wait_until(reads(bob, "from the dnsmesh node to the dmfdns node"), CONVERGE, step=1.0)
    wait_until(reads(alice, "and back again"), CONVERGE, step=1.0)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.ci
def test_a_delete_holds_on_dmfdns_against_the_older_reference_copy_until_rewritten(mixed):
    """A ``dnsmesh`` node knows no deletes (docs/decisions.md §3.3): it keeps serving the value
    until it expires, and its older copy does not undo the delete on dmfdns; a write of the
    value to the reference after the delete is newer, and brings it back."""
    ours, reference = mixed
    name = f"deleted.{ZONE}"
    ours.post(name, "gone soon")
    wait_until(lambda: get_values(reference.url, name) == {"gone soon"}, CONVERGE)
    assert ours.delete(name, "gone soon") == 204
    pages = ours.metric("dmfdns_sync_digest_pages_total", peer=reference.url)
    wait_until(lambda: ours.metric("dmfdns_sync_digest_pages_total", peer=reference.url)
               >= pages + 3, CONVERGE)
    assert get_values(ours.url, name) == set()
    assert txt_values(ours.dns_port, name)[0] == "NXDOMAIN"
    assert get_values(reference.url, name) == {"gone soon"}

    post_record(reference.url, name, "gone soon")
    wait_until(lambda: get_values(ours.url, name) == {"gone soon"}, CONVERGE)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.ci
def test_one_signed_manifest_for_both_nodes_and_newer_ones_gossiped_both_ways(tmp_path):
    """Peers from the operator's signed manifest, as docs/decisions.md §6.1 deploys a cluster,
    pinned on both nodes (the reference: ``DMP_CLUSTER_FILE`` holding the wire,
    ``DMP_NODE_ID``, ``DMP_SYNC_OPERATOR_SPK``, ``DMP_CLUSTER_BASE_DOMAIN``). Records
    converge; a newer manifest written to either node is taken up by the other."""
    reference_bin()
    reference = ReferenceNode(tmp_path, sync_token=TOKEN, extra_env={
        "DMP_NODE_ID": "reference", "DMP_SYNC_OPERATOR_SPK": OPERATOR.public_key.hex(),
        "DMP_CLUSTER_BASE_DOMAIN": ZONE})
    ours = NodeProc(tmp_path, "dmfdns", cluster=f'base = "{ZONE}"\n'
                    f'operator_key = "{OPERATOR.public_key.hex()}"\n'
                    'manifest_file = "manifest.wire"')

    def signed(seq: int) -> str:
        nodes = [ClusterNode("dmfdns", ours.url, f"127.0.0.1:{ours.dns_port}"),
                 ClusterNode("reference", reference.url, f"127.0.0.1:{reference.dns_port}")]
        return cluster_manifest.sign(seq, int(time.time()) + 30 * 86400, OPERATOR.public_key,
                                     ZONE, nodes, OPERATOR)
    (ours.dir / "manifest.wire").write_text(signed(1) + "\n")
    reference.cluster_file.write_text(signed(1))
    ours.write_config()
    try:
        reference.start()
        reference.wait_ready()
        ours.start()
        ours.wait_ready()
        ours.post(f"written-to-dmfdns.{ZONE}", "one")
        post_record(reference.url, f"written-to-reference.{ZONE}", "two")
        expected = {f"written-to-dmfdns.{ZONE}": {"one"}, f"written-to-reference.{ZONE}": {"two"}}
        wait_until(lambda: _holds_exactly(ours.url, expected)
                   and _holds_exactly(reference.url, expected), CONVERGE)

        post_record(reference.url, owners.cluster(ZONE), signed(2), ttl=86400)
        wait_until(lambda: ours.metric("dmfdns_cluster_manifest_seq") == 2, CONVERGE)
        ours.post(owners.cluster(ZONE), signed(3), ttl=86400)
        wait_until(lambda: _manifest_seq(reference) == 3, CONVERGE)
        assert _manifest_seq(ours) == 3

        ours.post(f"after-seq-3.{ZONE}", "three")
        wait_until(lambda: get_values(reference.url, f"after-seq-3.{ZONE}") == {"three"},
                   CONVERGE)
    finally:
        ours.kill()
        reference.kill()


def _manifest_seq(node) -> int:
    """The seq of the manifest a node's ``/v1/sync/cluster-manifest`` serves (0: none)."""
    status, data = http_get(node.url + "/v1/sync/cluster-manifest", token=TOKEN)
    return json.loads(data)["seq"] if status == 200 else 0


# --- heartbeats and a dnsmesh peer ----------------------------------------------------------

@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.ci
def test_a_dmfdns_node_publishing_heartbeats_does_not_stall_its_dnsmesh_peer(tmp_path):
    """The reference refuses heartbeats in sync and its cursor stops at a refused entry, so
    records more than one digest page (1000) after dmfdns's heartbeat would never reach it;
    dmfdns leaves heartbeats out of the digest a reference peer reads."""
    reference_bin()
    reference = ReferenceNode(tmp_path, sync_token=TOKEN, sync_interval=0.5)
    ours = NodeProc(tmp_path, "dmfdns", cluster=f'peers = ["{reference.url}"]\n'
                    'heartbeat_endpoint = "http://n1.mesh.test:8401"\n'
                    'heartbeat_key_file = "heartbeat.key"')
    (ours.dir / "heartbeat.key").write_text(sha256(b"heartbeat operator").hex() + "\n")
    reference.peers = [ours.url]
    ours.write_config()
    try:
        reference.start()
        reference.wait_ready()
        ours.start()
        ours.wait_ready()
        heartbeat_owner = owners.heartbeat(ZONE)
        wait_until(lambda: get_values(ours.url, heartbeat_owner), CONVERGE)
        count = 1100
        for i in range(count):
            ours.post(f"after-heartbeat-{i}.{ZONE}", f"value {i}")
        wait_until(lambda: _reference_count(reference) == count, CONVERGE, step=0.5)
        assert get_values(reference.url, heartbeat_owner) == set()
        assert get_values(reference.url, f"after-heartbeat-{count - 1}.{ZONE}") == \
            {f"value {count - 1}"}
    finally:
        ours.kill()
        reference.kill()


def _reference_count(reference: ReferenceNode) -> int:
    status, data = http_get(reference.url + "/stats")
    assert status == 200
    return json.loads(data)["records"]


def test_the_reference_shaped_digest_leaves_heartbeats_out_and_passes_them():
    """Pure: the digest a peer without the capability header reads (dmfdns.sync.wire)."""
    signer = _keys("operator").signer
    beat = heartbeat.sign("http://n1.mesh.test:8401", signer.public_key, "dmfdns-0.1.0", 0,
                          ZONE, 1_800_000_000, 1_800_000_600, signer)
    changes = tuple(Change(ts_ms=1_800_000_000_000 + i, name=name, value_hash=sha256(
        value.encode()).hex(), value=value, expiry=1_800_003_600.0)
        for i, (name, value) in enumerate([("a.mesh.test", "one"),
                                           (owners.heartbeat(ZONE), beat),
                                           ("b.mesh.test", "two")]))
    last = Cursor(changes[-1].ts_ms, changes[-1].name, changes[-1].value_hash)
    page = ChangesPage(changes, False, last)
    for_reference = wire.digest_body(page, Cursor(), 1_800_000_000.0, extended=False)
    assert [e["name"] for e in for_reference["records"]] == ["a.mesh.test", "b.mesh.test"]
    assert for_reference["next_cursor"] == format_cursor(last)
    for_dmfdns = wire.digest_body(page, Cursor(), 1_800_000_000.0, extended=True)
    assert len(for_dmfdns["records"]) == 3


# --- the transport, without the reference ---------------------------------------------------

class _Http10Handler(BaseHTTPRequestHandler):
    """Answers every GET and POST with a small JSON body over HTTP/1.0 (the stdlib
    default, as the reference node's API), then closes."""

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"path": self.path, "method": self.command}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def http10_server():
    server = HTTPServer(("127.0.0.1", 0), _Http10Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_peer_speaking_http_1_0_gets_every_call_answered(http10_server):
    """A digest (GET) then pulls (POST) back to back, as one sync tick does: each POST
    must not land on the connection the peer closed after the previous answer."""
    transport = HttpClient(reactor, timeout=3.0, max_bytes=1 << 20)
    try:
        for method in ("GET", "POST", "POST", "GET", "POST"):
            body = b"{}" if method == "POST" else None
            response = await transport.request(method, f"{http10_server}/v1/sync/x", {},
                                               body)
            assert response.status == 200
            assert json.loads(response.body) == {"path": "/v1/sync/x", "method": method}
    finally:
        await transport.close()
