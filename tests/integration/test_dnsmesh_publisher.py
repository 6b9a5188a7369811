"""The reference ``dnsmesh`` 0.7.5 CLI publishes and messages through a dmfdns node alone.

Two ``dnsmesh`` identities, each in its own ``DMP_CONFIG_HOME``, know only one ``dmfdns
serve`` subprocess (open write mode on loopback): writes go to its ``/v1/records`` API
through the reference's HTTP writer, reads go to its DNS port. The sender publishes its
identity, fetches the recipient's, sends; the recipient's ``dnsmesh recv`` reads the message
back over DNS from dmfdns and prints the text. dmfdns's own record parsers then check that
what dmfdns stored and serves is what the reference signed.
"""

import pytest

from dmfdns.proto import chunk, identity, owners, prekey, slot_manifest
from dmfdns.proto.signing import sha256
from cluster_procs import NodeProc
from dnsmesh_support import (ZONE, DnsmeshUser, get_values, printed_messages, reference_bin,
                             txt_values)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]


@pytest.fixture
def dmfdns_node(tmp_path):
    reference_bin()               # fail before starting anything when the reference is missing
    node = NodeProc(tmp_path, "dmfdns", cluster="")
    node.write_config()
    node.start()
    try:
        node.wait_ready()
        yield node
    finally:
        node.kill()


def _users(tmp_path, node):
    return [DnsmeshUser(tmp_path / name, name, dns_port=node.dns_port, http_port=node.http_port)
            for name in ("alice", "bob")]


def _identity_served(node, user) -> identity.Identity:
    """The user's identity as dmfdns serves it over DNS, verified by dmfdns's parser."""
    owner = owners.identity_hashed(user.username, ZONE)
    rcode, values = txt_values(node.dns_port, owner)
    assert rcode == "NOERROR" and len(values) == 1, (rcode, values)
    assert set(values) == get_values(node.url, owner)
    record = identity.parse_and_verify(values[0], now=0, expected_username=user.username)
    assert record is not None, values[0]
    assert record.ed25519_spk.hex() == user.config_value("verify_pubkey")
    return record


def test_dnsmesh_publishes_and_messages_through_a_dmfdns_node(tmp_path, dmfdns_node):
    node = dmfdns_node
    alice, bob = _users(tmp_path, node)
    for user in (alice, bob):
        user.init()
        user.run("identity", "publish")
    alice_id, bob_id = _identity_served(node, alice), _identity_served(node, bob)

    alice.run("identity", "fetch", "bob@mesh.test", "--add")
    bob.run("identity", "fetch", "alice@mesh.test", "--add")
    text = "hello bob, through dmfdns"
    alice.run("send", "bob@mesh.test", text)

    # What the reference wrote is in dmfdns and passes dmfdns's own admission parsers:
    # a slot manifest in bob's mailbox signed by alice, and its chunks.
    manifests = _manifests_for(node, sha256(bob_id.x25519_pk))   # user_id (dmp-wire 2.1)
    assert len(manifests) == 1, manifests
    (manifest,) = manifests
    assert manifest.sender_spk == alice_id.ed25519_spk
    key = owners.message_key(manifest.msg_id, manifest.recipient_id, manifest.sender_spk)
    for index in range(manifest.total_chunks):
        rcode, values = txt_values(node.dns_port, owners.chunk(index, key, ZONE))
        assert rcode == "NOERROR" and len(values) == 1
        assert chunk.parse_and_verify(values[0], now=0,
                                      expected_hash=manifest.chunk_hashes[index]) is not None

    received = bob.run("recv")
    assert printed_messages(received.stdout) == [text], received.stdout
    again = bob.run("recv")
    assert printed_messages(again.stdout) == [], again.stdout


def test_dnsmesh_prekeys_served_by_dmfdns_carry_a_forward_secret_message(tmp_path,
                                                                         dmfdns_node):
    """Contacts pinned under a bare username use the recipient's prekeys
    (docs/compatibility.md §7.1, quirk 3): the prekey pool goes through dmfdns too, and the
    message names one of them."""
    node = dmfdns_node
    alice, bob = _users(tmp_path, node)
    for user in (alice, bob):
        user.init()
        user.run("identity", "publish")
    bob.run("identity", "refresh-prekeys", "--count", "3")
    alice_id, bob_id = _identity_served(node, alice), _identity_served(node, bob)
    rcode, values = txt_values(node.dns_port, owners.prekeys("bob", ZONE))
    assert rcode == "NOERROR" and len(values) == 3
    pool = [prekey.parse_and_verify(v, bob_id.ed25519_spk, now=alice_id.ts) for v in values]
    assert None not in pool

    alice.run("contacts", "add", "bob", bob_id.x25519_pk.hex(), "--signing-key",
              bob_id.ed25519_spk.hex())
    bob.run("identity", "fetch", "alice@mesh.test", "--add")
    text = "sealed to one of your prekeys, through dmfdns"
    alice.run("send", "bob", text)
    (manifest,) = _manifests_for(node, sha256(bob_id.x25519_pk))
    assert manifest.prekey_id in {p.prekey_id for p in pool}

    received = bob.run("recv")
    assert printed_messages(received.stdout) == [text], received.stdout


def _manifests_for(node, recipient_id: bytes) -> list[slot_manifest.SlotManifest]:
    """Every verifying slot manifest dmfdns serves in the recipient's ten slots."""
    found = []
    for n in range(owners.SLOT_COUNT):
        _, values = txt_values(node.dns_port, owners.slot(n, recipient_id, ZONE))
        records = [slot_manifest.decode(value) for value in values]
        assert None not in records, values
        found += [r for r in records if r.recipient_id == recipient_id]
    return found
