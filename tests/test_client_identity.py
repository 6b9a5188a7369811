"""Identities, rotation chains, revocation and cluster discovery on the user side."""

import pytest
import pytest_twisted

from dmfdns.client import discovery, identity_ops, receive, rotation, send
from dmfdns.proto import bootstrap, cluster_manifest, identity, owners
from dmfdns.proto import rotation as proto_rotation
from dmfdns.proto.signing import Signer, sha256

from client_fakes import NOW, FakeMesh, make_user, pin_each_other


@pytest_twisted.ensureDeferred
async def test_publish_hashed_and_fetch_by_address():
    mesh = FakeMesh()
    alice = make_user("alice")
    owner = await identity_ops.publish_identity(mesh.net, alice[0], alice[1].keys, NOW)
    assert owner == owners.identity_hashed("alice", "mesh.test")
    record = identity.decode(mesh.records[owner][0])
    assert record.versions == (1, 2)
    found = await identity_ops.find_identity(mesh.net, "alice@Mesh.Test.", NOW)
    assert found.record.ed25519_spk == alice[1].keys.ed25519_public
    assert found.fingerprint == identity_ops.contact_fingerprint(
        pin_each_other(make_user("x"), alice))


@pytest_twisted.ensureDeferred
async def test_zone_anchored_identity_is_found_first():
    mesh = FakeMesh()
    alice = make_user("alice", identity_domain="alice.example")
    owner = await identity_ops.publish_identity(mesh.net, alice[0], alice[1].keys, NOW)
    assert owner == "dmp.alice.example"
    found = await identity_ops.find_identity(mesh.net, "alice@alice.example", NOW)
    assert found.owner == "dmp.alice.example"


@pytest_twisted.ensureDeferred
async def test_a_record_for_another_username_or_key_does_not_count():
    mesh = FakeMesh()
    mallory = make_user("mallory")
    keys = mallory[1].keys
    wire = identity.sign("mallory", keys.x25519_public, keys.ed25519_public, NOW, keys.signer)
    mesh.records["dmp.mesh.test"] = [wire]       # anchored name, wrong username
    assert await identity_ops.find_identity(mesh.net, "alice@mesh.test", NOW) is None
    alice = make_user("alice")
    await identity_ops.publish_identity(mesh.net, alice[0], alice[1].keys, NOW)
    assert await identity_ops.find_identity(mesh.net, "alice@mesh.test", NOW,
                                            expected_spk=keys.ed25519_public) is None


def test_bad_addresses_are_refused():
    for text in ("alice", "@mesh.test", "alice@", "a@b@c"):
        with pytest.raises(identity_ops.IdentityError):
            identity_ops.split_address(text)


def test_pinning_keeps_a_block_and_updates_keys():
    _, state = make_user("bob")
    alice = make_user("alice")
    record = identity.decode(identity_ops.own_identity_record(alice[0], alice[1].keys, NOW))
    found = identity_ops.FoundIdentity(record, "x", "alice", "mesh.test")
    contact = identity_ops.pin(state, found, NOW)
    contact.blocked = True
    again = identity_ops.pin(state, found, NOW)
    assert again is contact and again.blocked and len(state.contacts) == 1


# --- rotation chains ------------------------------------------------------------------

def _signers(count):
    return [Signer(sha256(f"chain/{i}".encode())) for i in range(count)]


def _rot(old, new, seq, subject="alice@mesh.test"):
    wire = proto_rotation.sign(proto_rotation.SUBJECT_USER, subject, old.public_key,
                               new.public_key, seq, NOW, NOW + 1000, old, new)
    return proto_rotation.decode(wire)


def test_chain_walk_follows_hops_in_seq_order():
    s = _signers(4)
    chain = [_rot(s[0], s[1], 1), _rot(s[1], s[2], 2), _rot(s[2], s[3], 3)]
    result = rotation.walk_chain(s[0].public_key, chain, [])
    assert result == rotation.ChainResult(rotation.ROTATED, s[3].public_key)
    assert rotation.walk_chain(s[3].public_key, chain, []).status == rotation.UNCHANGED


def test_chain_walk_refuses_forks_replays_loops_and_long_chains():
    s = _signers(7)
    fork = [_rot(s[0], s[1], 1), _rot(s[0], s[2], 2)]
    assert rotation.walk_chain(s[0].public_key, fork, []).status == rotation.BROKEN
    backwards = [_rot(s[0], s[1], 5), _rot(s[1], s[2], 5)]
    assert rotation.walk_chain(s[0].public_key, backwards, []).status == rotation.BROKEN
    loop = [_rot(s[0], s[1], 1), _rot(s[1], s[0], 2)]
    assert rotation.walk_chain(s[0].public_key, loop, []).status == rotation.BROKEN
    long = [_rot(s[i], s[i + 1], i + 1) for i in range(5)]
    result = rotation.walk_chain(s[0].public_key, long, [])
    assert result.status == rotation.BROKEN and result.head == s[0].public_key
    assert rotation.walk_chain(s[1].public_key, long, []).head == s[5].public_key


def test_chain_walk_stops_at_revoked_keys():
    s = _signers(3)
    chain = [_rot(s[0], s[1], 1)]
    assert rotation.walk_chain(s[0].public_key, chain, [s[0].public_key]).status == \
        rotation.REVOKED
    assert rotation.walk_chain(s[0].public_key, chain, [s[1].public_key]).status == \
        rotation.BROKEN


@pytest_twisted.ensureDeferred
async def test_receivers_follow_a_rotation_and_accept_the_new_key():
    mesh = FakeMesh()
    alice, bob = make_user("alice"), make_user("bob")
    to_bob = pin_each_other(alice, bob)
    pin_each_other(bob, alice)
    old_spk = alice[1].keys.ed25519_public
    await rotation.rotate(mesh.net, alice[0], alice[1], NOW)
    assert alice[1].keys.ed25519_public != old_spk
    assert alice[0].ed25519_public == alice[1].keys.ed25519_public
    await send.send_text(mesh.net, alice[0], alice[1], to_bob, b"new key", NOW)
    report = await receive.receive(mesh.net, bob[0], bob[1], NOW + 5)
    assert [m.body for m in report.delivered] == [b"new key"]
    assert bob[1].contacts[0].ed25519 == alice[1].keys.ed25519_public
    assert any("rotated" in note for note in report.notes)


@pytest_twisted.ensureDeferred
async def test_a_rotated_user_still_opens_mail_sent_to_the_old_key():
    mesh = FakeMesh()
    alice, bob = make_user("alice"), make_user("bob")
    to_bob = pin_each_other(alice, bob)
    pin_each_other(bob, alice)
    await send.send_text(mesh.net, alice[0], alice[1], to_bob, b"to the old key", NOW)
    await rotation.rotate(mesh.net, bob[0], bob[1], NOW + 1)
    report = await receive.receive(mesh.net, bob[0], bob[1], NOW + 5)
    assert [m.body for m in report.delivered] == [b"to the old key"]


@pytest_twisted.ensureDeferred
async def test_a_revoked_key_is_refused():
    mesh = FakeMesh()
    alice, bob = make_user("alice"), make_user("bob")
    to_bob = pin_each_other(alice, bob)
    pin_each_other(bob, alice)
    await send.send_text(mesh.net, alice[0], alice[1], to_bob, b"before", NOW)
    await rotation.revoke(mesh.net, alice[0], alice[1], NOW + 1)
    report = await receive.receive(mesh.net, bob[0], bob[1], NOW + 5)
    assert report.delivered == [] and report.dropped == {"revoked": 1}
    assert bob[1].contacts[0].revoked
    with pytest.raises(send.SendError):
        await send.send_text(mesh.net, alice[0], alice[1], to_bob, b"after", NOW + 2)


@pytest_twisted.ensureDeferred
async def test_rotation_records_for_another_subject_are_ignored():
    mesh = FakeMesh()
    alice, bob = make_user("alice"), make_user("bob")
    pin_each_other(bob, alice)
    thief = Signer(sha256(b"thief"))
    wire = proto_rotation.sign(proto_rotation.SUBJECT_USER, "carol@mesh.test",
                               alice[1].keys.ed25519_public, thief.public_key, 1, NOW,
                               NOW + 1000, alice[1].keys.signer, thief)
    mesh.records[owners.rotate_user_hashed("alice", "mesh.test")] = [wire]
    result = await rotation.follow(mesh.net, bob[1].contacts[0], NOW)
    assert result.status == rotation.UNCHANGED


# --- discovery --------------------------------------------------------------------------

def _manifest(operator, seq, base="cluster.example", http="http://127.0.0.1:1"):
    node = cluster_manifest.ClusterNode("n1", http, "127.0.0.1:5301")
    return cluster_manifest.sign(seq, NOW + 1000, operator.public_key, base, [node], operator)


@pytest_twisted.ensureDeferred
async def test_discovery_goes_from_the_bootstrap_record_to_the_newest_manifest():
    mesh = FakeMesh()
    zone_key, operator = Signer(sha256(b"zone")), Signer(sha256(b"op"))
    entry = bootstrap.BootstrapEntry(10, "cluster.example", operator.public_key)
    mesh.records["_dmp.users.example"] = [bootstrap.sign(
        3, NOW + 1000, zone_key.public_key, "users.example", [entry], zone_key)]
    mesh.records["cluster.cluster.example"] = [_manifest(operator, 4, http="http://old:1"),
                                               _manifest(operator, 7, http="http://new:1")]
    found = await discovery.discover(mesh, "users.example", zone_key.public_key, NOW)
    assert found.manifest.seq == 7 and found.nodes[0].http == "http://new:1"
    assert found.nodes[0].dns == "127.0.0.1:5301"
    with pytest.raises(discovery.DiscoveryError):
        await discovery.discover(mesh, "users.example", operator.public_key, NOW)


@pytest_twisted.ensureDeferred
async def test_a_manifest_is_installed_only_when_newer_and_signed_by_the_pinned_key():
    mesh = FakeMesh()
    operator, other = Signer(sha256(b"op")), Signer(sha256(b"other"))
    mesh.records["cluster.cluster.example"] = [_manifest(operator, 5), _manifest(other, 9)]
    found = await discovery.pinned_cluster(mesh, "cluster.example", operator.public_key, NOW)
    assert found.manifest.seq == 5
    assert await discovery.pinned_cluster(mesh, "cluster.example", operator.public_key, NOW,
                                          min_seq=5) is None
