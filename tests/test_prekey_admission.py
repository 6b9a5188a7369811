"""Prekeys are verified against the stored identity on every write path: HTTP (through the
node that ``make_service`` builds), anti-entropy pulls, and ``dmfdns records put/import``.

A prekey at ``prekeys.id-<hex12(H(user))>`` verifies against an identity at
``id-<hex16(H(user))>`` when one is stored; with none stored it is checked structurally
(the reference's rule for every prekey).
"""

import dataclasses
import hashlib
import io
import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from dmfdns.cli import run as cli_run
from dmfdns.config import load_config
from dmfdns.node import make_service
from dmfdns.proto import identity, owners, prekey
from dmfdns.proto.signing import Signer
from dmfdns.store.identities import (MAX_IDENTITY_NAMES, identity_values,
                                     pending_identity_values)
from dmfdns.store.memory_store import MemoryStore
from http_support import parse_responses, request_bytes
from sync_harness import make_cluster, run as run_sync
from test_cli_serve import write_config

NOW = 1_800_000_000
ZONE = "mesh.test"
ALICE = Signer(hashlib.sha256(b"prekey-admission/alice").digest())
MALLORY = Signer(hashlib.sha256(b"prekey-admission/mallory").digest())
ALICE_ID = owners.identity_hashed("alice", ZONE)
ALICE_PREKEYS = owners.prekeys("alice", ZONE)
CAROL_PREKEYS = owners.prekeys("carol", ZONE)     # carol publishes no identity
HASH12 = hashlib.sha256(b"alice").hexdigest()[:12]
NOT_SIGNED = "prekey is not signed by the identity published for this name"


def an_identity(username="alice", signer=ALICE) -> str:
    return identity.sign(username, bytes(range(32)), signer.public_key, NOW, signer)


def a_prekey(signer, prekey_id=7, exp=NOW + 86400) -> str:
    return prekey.sign(prekey_id, bytes(range(32, 64)), exp, signer)


# --- finding the identities -------------------------------------------------------------------

def test_identity_values_are_those_at_the_name_hash_in_the_same_parent():
    store = MemoryStore()
    put = lambda name, value, ttl=600: store.put(name, value, expiry=NOW + ttl, now=NOW)
    put(ALICE_ID, "first")
    put(ALICE_ID, "second")
    put(f"id-{HASH12}0000.{ZONE}", "neighbour", ttl=10)      # shares the 12 characters
    put(owners.identity_hashed("alice", "sub." + ZONE), "other parent")
    put("x." + ALICE_ID, "below the identity")
    put(owners.identity_hashed("bob", ZONE), "bob")
    assert identity_values(store, HASH12, ZONE, now=NOW + 1) == [
        "neighbour", "first", "second"]
    assert identity_values(store, HASH12, ZONE, now=NOW + 20) == ["first", "second"]
    assert identity_values(store, HASH12, "other.test", now=NOW) == []


def test_identity_values_read_a_bounded_number_of_names():
    store = MemoryStore()
    for i in range(MAX_IDENTITY_NAMES + 3):
        store.put(f"id-{HASH12}{i:04x}.{ZONE}", f"v{i}", expiry=NOW + 60, now=NOW)
    assert len(identity_values(store, HASH12, ZONE, now=NOW)) == MAX_IDENTITY_NAMES


def test_pending_identity_values_match_like_the_store_does():
    pending = {ALICE_ID: ["a"], "x." + ALICE_ID: ["deep"], ALICE_PREKEYS: ["pk"],
               owners.identity_hashed("alice", "other.test"): ["elsewhere"]}
    assert pending_identity_values(pending, HASH12, ZONE) == ["a"]


# --- HTTP, through the node make_service builds ------------------------------------------------

class HttpNode:
    """A node from ``make_service`` on a MemoryReactorClock with its LMDB under tmp_path;
    requests go into its real site over a StringTransport."""

    def __init__(self, tmp_path):
        base = load_config(None, cwd=tmp_path)
        config = dataclasses.replace(
            base, node=dataclasses.replace(base.node, data_dir=tmp_path / "data"),
            http=dataclasses.replace(base.http, listen=()))
        self.reactor = MemoryReactorClock()
        self.reactor.advance(NOW)
        self.node = make_service(config, self.reactor)

    def post(self, name, value):
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = self.node.http.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        channel.dataReceived(request_bytes("POST", f"/v1/records/{name}",
                                           {"value": value, "ttl": 600}))
        self.reactor.advance(0)           # the group commit of this turn
        (response,) = parse_responses(transport.value())
        return response.status, json.loads(response.body)

    def values(self, name):
        return [v.value for v in self.node.store.get(name, self.reactor.seconds())]

    def refused(self, reason):
        return self.node.metrics.registry.get_sample_value(
            "dmfdns_writes_refused_total", {"path": "http", "reason": reason})


@pytest.fixture
def http_node(tmp_path):
    node = HttpNode(tmp_path)
    yield node
    node.node.close()


def test_http_admits_a_prekey_signed_by_the_stored_identity(http_node):
    assert http_node.post(ALICE_ID, an_identity()) == (201, {"ok": True})
    assert http_node.post(ALICE_PREKEYS, a_prekey(ALICE)) == (201, {"ok": True})
    assert http_node.values(ALICE_PREKEYS) == [a_prekey(ALICE)]


def test_http_refuses_a_prekey_signed_by_another_key(http_node):
    http_node.post(ALICE_ID, an_identity())
    status, body = http_node.post(ALICE_PREKEYS, a_prekey(MALLORY))
    assert status == 400 and NOT_SIGNED in body["error"]
    assert http_node.values(ALICE_PREKEYS) == []
    assert http_node.refused("invalid_record") == 1


def test_http_checks_a_prekey_structurally_when_no_identity_is_stored(http_node):
    # The same value that is refused under alice's name is fine where nobody published.
    assert http_node.post(CAROL_PREKEYS, a_prekey(MALLORY)) == (201, {"ok": True})
    status, body = http_node.post(CAROL_PREKEYS, a_prekey(MALLORY, exp=NOW - 1))
    assert status == 400 and "expired" in body["error"]
    assert http_node.refused("time") == 1


def test_http_a_later_identity_governs_later_prekeys(http_node):
    assert http_node.post(ALICE_PREKEYS, a_prekey(MALLORY, 1))[0] == 201   # no identity yet
    http_node.post(ALICE_ID, an_identity())
    assert http_node.post(ALICE_PREKEYS, a_prekey(MALLORY, 2))[0] == 400
    assert http_node.post(ALICE_PREKEYS, a_prekey(ALICE, 3))[0] == 201


# --- anti-entropy ------------------------------------------------------------------------------

def two_nodes(root):
    clock, _, nodes = make_cluster(root, ("n1", "n2"))
    for node in nodes.values():
        node.start()
    return clock, nodes


def pull_once(nodes):
    """One anti-entropy tick of n2 against n1 (past the stable horizon)."""
    run_sync(nodes["n1"].clock, [nodes["n2"]])


def user_records(node) -> set:
    """The identity and prekey records a node holds (not the cluster manifest)."""
    return {(name, value) for name, value in node.records() if "id-" in name}


def test_sync_admits_prekeys_of_the_stored_identity_and_refuses_others(tmp_path):
    _, nodes = two_nodes(tmp_path)
    n1, n2 = nodes["n1"], nodes["n2"]
    # n1 holds what a structural-only peer (a dnsmesh node) would accept.
    for value in (an_identity(), a_prekey(ALICE, 1), a_prekey(MALLORY, 2)):
        n1.put(ALICE_PREKEYS if value.startswith("v=dmp1;t=prekey") else ALICE_ID, value)
    n2.put(ALICE_ID, an_identity())
    pull_once(nodes)
    assert user_records(n2) == {(ALICE_ID, an_identity()), (ALICE_PREKEYS, a_prekey(ALICE, 1))}
    assert n2.state("n1").rejected.get("invalid_record") == 1
    assert n2.metric("dmfdns_writes_refused_total", path="sync",
                     reason="invalid_record") == 1
    # Refused, counted and stepped over: the next tick does not pull it again.
    pull_once(nodes)
    assert n2.state("n1").rejected.get("invalid_record") == 1
    assert n2.state("n1").caught_up


def test_sync_verifies_prekeys_against_an_identity_pulled_in_the_same_batch(tmp_path):
    clock, nodes = two_nodes(tmp_path)
    n1, n2 = nodes["n1"], nodes["n2"]
    # Prekeys first, so the peer lists them before the identity.
    n1.put(ALICE_PREKEYS, a_prekey(MALLORY, 2))
    n1.put(ALICE_PREKEYS, a_prekey(ALICE, 1))
    clock.advance(1)
    n1.put(ALICE_ID, an_identity())
    pull_once(nodes)
    assert user_records(n2) == {(ALICE_ID, an_identity()), (ALICE_PREKEYS, a_prekey(ALICE, 1))}
    assert n2.state("n1").rejected.get("invalid_record") == 1


def test_sync_checks_prekeys_structurally_without_an_identity(tmp_path):
    _, nodes = two_nodes(tmp_path)
    nodes["n1"].put(CAROL_PREKEYS, a_prekey(MALLORY, 2))
    nodes["n1"].put(CAROL_PREKEYS, a_prekey(MALLORY, 3, exp=NOW + 31 * 86400))
    pull_once(nodes)
    assert user_records(nodes["n2"]) == {(CAROL_PREKEYS, a_prekey(MALLORY, 2))}
    assert nodes["n2"].state("n1").rejected.get("time") == 1


# --- dmfdns records put / import ---------------------------------------------------------------

def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli_run(list(argv), now=float(NOW), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_records_put_verifies_prekeys_against_the_stored_identity(tmp_path):
    conf = str(write_config(tmp_path))
    assert cli("records", "put", CAROL_PREKEYS, a_prekey(MALLORY), "--config", conf)[0] == 0
    assert cli("records", "put", ALICE_ID, an_identity(), "--config", conf)[0] == 0
    status, _, err = cli("records", "put", ALICE_PREKEYS, a_prekey(MALLORY), "--config", conf)
    assert status == 1 and f"{ALICE_PREKEYS}: refused" in err and NOT_SIGNED in err
    assert cli("records", "put", ALICE_PREKEYS, a_prekey(ALICE), "--config", conf)[0] == 0
    listed = cli("records", "list", "prekeys.", "--config", conf)[1]
    assert a_prekey(ALICE) in listed and listed.count("\n") == 2


def test_records_import_verifies_prekeys_against_an_identity_earlier_in_the_file(tmp_path):
    conf = str(write_config(tmp_path))
    data = tmp_path / "records.jsonl"
    lines = [{"name": ALICE_ID, "value": an_identity()},
             {"name": ALICE_PREKEYS, "value": a_prekey(ALICE, 1)},
             {"name": ALICE_PREKEYS, "value": a_prekey(MALLORY, 2)}]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    status, _, err = cli("records", "import", str(data), "--config", conf)
    assert status == 1 and f"{data}:3: refused" in err and NOT_SIGNED in err
    data.write_text("".join(json.dumps(line) + "\n" for line in lines[:2]))
    assert cli("records", "import", str(data), "--config", conf)[0] == 0
