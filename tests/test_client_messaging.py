"""Send and receive over an in-memory mesh: sealing, chunking, prekeys, loss, pins, replay."""

import pytest
import pytest_twisted

from dmfdns.client import identity_ops, parts, prekeys, receive, send
from dmfdns.proto import chunk, envelope, owners, slot_manifest
from dmfdns.proto.signing import sha256

from client_fakes import NOW, FakeMesh, make_user, pin_each_other


def _pair():
    mesh = FakeMesh()
    alice, bob = make_user("alice"), make_user("bob")
    to_bob = pin_each_other(alice, bob)
    pin_each_other(bob, alice)
    return mesh, alice, bob, to_bob


async def _send(mesh, sender, contact, text, now=NOW):
    return await send.send_text(mesh.net, sender[0], sender[1], contact, text, now)


async def _recv(mesh, user, now=NOW + 5, **kw):
    return await receive.receive(mesh.net, user[0], user[1], now, **kw)


@pytest_twisted.ensureDeferred
async def test_a_message_arrives_with_its_verified_sender():
    mesh, alice, bob, to_bob = _pair()
    sent = await _send(mesh, alice, to_bob, "hello bob".encode())
    assert len(sent) == 1 and sent[0].prekey_id == 0
    report = await _recv(mesh, bob)
    [message] = report.delivered
    assert message.body == b"hello bob"
    assert message.sender == "alice@mesh.test"
    assert message.contact == "alice@mesh.test"
    assert report.intro == []


@pytest_twisted.ensureDeferred
async def test_chunks_are_published_before_the_manifest():
    mesh, alice, bob, to_bob = _pair()
    [sent] = await _send(mesh, alice, to_bob, b"order")
    names = [name for name, _, _ in mesh.writes]
    assert names[-1].startswith("claim-") and sent.claimed    # the claim comes last
    names = names[:-1]
    assert names[-1] == sent.manifest_owner
    assert all(name.startswith("chunk-") for name in names[:-1])
    assert len(names) - 1 == sent.total_chunks
    manifest = slot_manifest.parse_and_verify(mesh.records[sent.manifest_owner][0], now=NOW)
    assert len(manifest.chunk_hashes) == manifest.total_chunks
    assert all(ttl == 300 for _, _, ttl in mesh.writes)


@pytest_twisted.ensureDeferred
async def test_the_replay_cache_delivers_a_message_once():
    mesh, alice, bob, to_bob = _pair()
    await _send(mesh, alice, to_bob, b"once")
    assert len((await _recv(mesh, bob)).delivered) == 1
    assert (await _recv(mesh, bob)).delivered == []
    # The cache forgets a message only after it expired, when no manifest is accepted anyway.
    assert (await _recv(mesh, bob, now=NOW + 400)).delivered == []
    assert bob[1].replay == []


@pytest_twisted.ensureDeferred
async def test_a_v1_recipient_gets_no_envelope_and_the_sender_stays_unnamed():
    mesh = FakeMesh()
    alice, bob = make_user("alice"), make_user("bob")
    to_bob = pin_each_other(alice, bob, versions=(1,))
    pin_each_other(bob, alice)
    await _send(mesh, alice, to_bob, b"DMPV2 lookalike? no")
    [message] = (await _recv(mesh, bob)).delivered
    assert message.body == b"DMPV2 lookalike? no"
    assert message.sender is None and message.contact == "alice@mesh.test"


@pytest_twisted.ensureDeferred
async def test_a_4_kib_message_travels_in_parts_and_is_joined():
    mesh, alice, bob, to_bob = _pair()
    text = ("ünïcode " * 600).encode()[:4096]
    sent = await _send(mesh, alice, to_bob, text)
    assert len(sent) == 2
    for manifest_wire in (mesh.records[s.manifest_owner][0] for s in sent):
        assert len(manifest_wire) <= 2048
    report = await _recv(mesh, bob)
    [message] = report.delivered
    assert message.body == text and message.parts == 2
    assert message.sender == "alice@mesh.test"
    assert bob[1].partials == {}


@pytest_twisted.ensureDeferred
async def test_parts_wait_until_all_have_arrived():
    mesh, alice, bob, to_bob = _pair()
    text = b"x" * 5000
    first, second = await _send(mesh, alice, to_bob, text)
    held = mesh.records.pop(second.manifest_owner)
    if first.manifest_owner == second.manifest_owner:  # both in one slot: keep the first
        mesh.records[first.manifest_owner] = [v for v in held if slot_manifest.decode(v)
                                              .msg_id == first.msg_id]
    report = await _recv(mesh, bob)
    assert report.delivered == [] and len(bob[1].partials) == 1
    mesh.records.setdefault(second.manifest_owner, [])
    for value in held:
        if value not in mesh.records[second.manifest_owner]:
            mesh.records[second.manifest_owner].append(value)
    [message] = (await _recv(mesh, bob)).delivered
    assert message.body == text


def test_a_reader_without_part_support_still_sees_every_byte():
    from dmfdns.proto.message import DMPHeader
    header = DMPHeader(bytes(16), bytes(32), bytes(32), NOW, 300)
    plaintexts = parts.split(b"y" * 9000, header, "alice@mesh.test", 2048)
    bodies = [envelope.unwrap(p) for p in plaintexts]
    assert b"".join(body for body, _ in bodies) == b"y" * 9000
    assert {sender for _, sender in bodies} == {"alice@mesh.test"}


def test_utf8_is_never_cut_inside_a_character():
    text = "€" * 100
    pieces = parts.cut_utf8(text.encode(), 10)
    assert all(len(p) <= 10 for p in pieces)
    assert "".join(p.decode() for p in pieces) == text


@pytest_twisted.ensureDeferred
async def test_lost_chunks_up_to_n_minus_k_are_tolerated():
    mesh, alice, bob, to_bob = _pair()
    text = b"lossy " * 200
    [sent] = await _send(mesh, alice, to_bob, text)
    chunk_names = mesh.names("chunk-")
    lost = sent.total_chunks - sent.data_chunks
    assert lost >= 2
    for name in chunk_names[:lost]:   # the data chunks go first: parity must rebuild them
        del mesh.records[name]
    [message] = (await _recv(mesh, bob)).delivered
    assert message.body == text


@pytest_twisted.ensureDeferred
async def test_one_chunk_too_many_lost_is_retried_on_the_next_poll():
    mesh, alice, bob, to_bob = _pair()
    [sent] = await _send(mesh, alice, to_bob, b"z" * 600)
    chunk_names = mesh.names("chunk-")
    stash = {name: mesh.records.pop(name)
             for name in chunk_names[:sent.total_chunks - sent.data_chunks + 1]}
    report = await _recv(mesh, bob)
    assert report.delivered == [] and report.dropped == {"chunks missing": 1}
    assert bob[1].replay == []
    mesh.records.update(stash)
    assert [m.body for m in (await _recv(mesh, bob)).delivered] == [b"z" * 600]


@pytest_twisted.ensureDeferred
async def test_a_chunk_that_does_not_match_its_hash_counts_as_lost():
    mesh, alice, bob, to_bob = _pair()
    [sent] = await _send(mesh, alice, to_bob, b"w" * 600)
    chunk_names = mesh.names("chunk-")
    # A forged chunk with a valid checksum under the first chunk's name, and the real one gone.
    forged = chunk.encode(chunk.make_blob(bytes(128), bytes(32)))
    mesh.records[chunk_names[0]] = [forged]
    [message] = (await _recv(mesh, bob)).delivered
    assert message.body == b"w" * 600
    # With as many forgeries as parity chunks plus one, nothing decodes.
    mesh2, alice2, bob2, to_bob2 = _pair()
    [sent2] = await _send(mesh2, alice2, to_bob2, b"w" * 600)
    for name in mesh2.names("chunk-")[:sent2.total_chunks - sent2.data_chunks + 1]:
        mesh2.records[name] = [forged]
    assert (await _recv(mesh2, bob2)).delivered == []


@pytest_twisted.ensureDeferred
async def test_an_unpinned_sender_goes_to_the_intro_queue():
    mesh = FakeMesh()
    alice, bob = make_user("alice"), make_user("bob")
    to_bob = pin_each_other(alice, bob)          # bob has not pinned alice
    await identity_ops.publish_identity(mesh.net, alice[0], alice[1].keys, NOW)
    await _send(mesh, alice, to_bob, b"hi, we have not met")
    report = await _recv(mesh, bob)
    assert report.delivered == []
    [intro] = report.intro
    # The envelope's sender is shown because alice's published identity carries the key.
    assert intro.body == b"hi, we have not met" and intro.sender == "alice@mesh.test"
    assert len(bob[1].intro) == 1 and bob[1].intro[0].sender_spk == alice[1].keys.ed25519_public


@pytest_twisted.ensureDeferred
async def test_an_unverifiable_envelope_sender_is_not_shown():
    mesh = FakeMesh()
    mallory, bob = make_user("mallory"), make_user("bob")
    to_bob = pin_each_other(mallory, bob)
    mallory[0].username = "alice"   # claims to be alice, whose identity is not mallory's
    alice = make_user("alice")
    await identity_ops.publish_identity(mesh.net, alice[0], alice[1].keys, NOW)
    await _send(mesh, mallory, to_bob, b"trust me")
    [intro] = (await _recv(mesh, bob)).intro
    assert intro.sender is None


@pytest_twisted.ensureDeferred
async def test_a_blocked_contact_is_dropped():
    mesh, alice, bob, to_bob = _pair()
    bob[1].contact("alice@mesh.test").blocked = True
    await _send(mesh, alice, to_bob, b"blocked")
    report = await _recv(mesh, bob)
    assert report.delivered == [] and report.intro == [] and report.dropped == {"blocked": 1}


@pytest_twisted.ensureDeferred
async def test_a_pin_counts_only_for_its_own_zone_or_ours():
    mesh = FakeMesh()
    alice, bob, carol = (make_user("alice", zone="a.test"), make_user("bob", zone="b.test"),
                         make_user("carol", zone="c.test"))
    to_bob = pin_each_other(alice, bob)
    pin_each_other(bob, alice)     # pinned for a.test
    pin_each_other(bob, carol)     # so bob walks c.test too
    alice[0].zone = "c.test"       # alice's key now writes into carol's zone
    await _send(mesh, alice, to_bob, b"from c.test")
    report = await _recv(mesh, bob)
    assert report.delivered == [] and len(report.intro) == 1
    alice[0].zone = "b.test"       # bob's own zone: any pinned key counts
    await _send(mesh, alice, to_bob, b"from b.test")
    report = await _recv(mesh, bob)
    assert [m.body for m in report.delivered] == [b"from b.test"]


@pytest_twisted.ensureDeferred
async def test_a_stale_message_is_dropped():
    mesh, alice, bob, to_bob = _pair()
    await _send(mesh, alice, to_bob, b"old")
    report = await _recv(mesh, bob, now=NOW + 301)
    assert report.delivered == []


@pytest_twisted.ensureDeferred
async def test_a_message_for_someone_else_is_ignored():
    mesh, alice, bob, to_bob = _pair()
    carol = make_user("carol")
    to_carol = pin_each_other(alice, carol)
    await _send(mesh, alice, to_carol, b"for carol")
    assert (await _recv(mesh, bob)).delivered == []


@pytest_twisted.ensureDeferred
async def test_a_prekey_message_burns_the_prekey_after_decrypting():
    mesh, alice, bob, to_bob = _pair()
    fresh = await prekeys.refresh(mesh.net, bob[0], bob[1], 3, NOW)
    assert len(fresh) == 3 and len(mesh.records[prekeys.pool_owner("bob", "mesh.test")]) == 3
    [sent] = await _send(mesh, alice, to_bob, b"forward secret")
    assert sent.prekey_id in {p.prekey_id for p in fresh}
    [message] = (await _recv(mesh, bob)).delivered
    assert message.body == b"forward secret" and message.prekey_id == sent.prekey_id
    assert sent.prekey_id not in {p.prekey_id for p in bob[1].prekeys}
    burned = next(p.wire for p in fresh if p.prekey_id == sent.prekey_id)
    assert burned not in mesh.records[prekeys.pool_owner("bob", "mesh.test")]
    assert (prekeys.pool_owner("bob", "mesh.test"), burned) in mesh.deletes


@pytest_twisted.ensureDeferred
async def test_a_message_for_a_prekey_we_do_not_hold_is_dropped():
    mesh, alice, bob, to_bob = _pair()
    await prekeys.refresh(mesh.net, bob[0], bob[1], 1, NOW)
    await _send(mesh, alice, to_bob, b"lost key")
    bob[1].prekeys = []
    report = await _recv(mesh, bob)
    assert report.delivered == [] and report.dropped == {"unknown prekey": 1}


@pytest_twisted.ensureDeferred
async def test_prekeys_signed_by_someone_else_or_expired_are_not_used():
    mesh, alice, bob, to_bob = _pair()
    mallory = make_user("mallory")
    forged = prekeys.generate(mallory[1].keys.signer, 2, NOW)
    expired = prekeys.generate(bob[1].keys.signer, 2, NOW - 90000)
    owner = prekeys.pool_owner("bob", "mesh.test")
    mesh.records[owner] = [p.wire for p in forged + expired]
    assert await prekeys.pick(mesh.net, to_bob, NOW) == (0, to_bob.x25519, 0)


@pytest_twisted.ensureDeferred
async def test_prekey_choice_is_spread_over_the_pool():
    mesh, alice, bob, to_bob = _pair()
    fresh = await prekeys.refresh(mesh.net, bob[0], bob[1], 4, NOW)
    picked = {(await prekeys.pick(mesh.net, to_bob, NOW))[0] for _ in range(60)}
    assert picked == {p.prekey_id for p in fresh}


@pytest_twisted.ensureDeferred
async def test_refresh_tops_the_pool_up_instead_of_growing_it():
    mesh, _, bob, _ = _pair()
    await prekeys.refresh(mesh.net, bob[0], bob[1], 5, NOW)
    again = await prekeys.refresh(mesh.net, bob[0], bob[1], 5, NOW + 10)
    assert again == [] and len(mesh.records[prekeys.pool_owner("bob", "mesh.test")]) == 5


@pytest_twisted.ensureDeferred
async def test_an_unreadable_slot_does_not_stop_the_walk():
    mesh, alice, bob, to_bob = _pair()
    [sent] = await _send(mesh, alice, to_bob, b"still here")
    rid = sha256(bob[1].keys.x25519_public)
    other = next(owners.slot(n, rid, "mesh.test") for n in range(10)
                 if owners.slot(n, rid, "mesh.test") != sent.manifest_owner)
    mesh.unreadable.add(other)
    report = await _recv(mesh, bob)
    assert [m.body for m in report.delivered] == [b"still here"]
    assert report.dropped == {"read failed": 1}


@pytest_twisted.ensureDeferred
async def test_a_sender_never_uses_one_prekey_twice():
    mesh, alice, bob, to_bob = _pair()
    fresh = await prekeys.refresh(mesh.net, bob[0], bob[1], 3, NOW)
    sent = await _send(mesh, alice, to_bob, b"p" * 5000)          # two parts
    sent += await _send(mesh, alice, to_bob, b"third")
    sent += await _send(mesh, alice, to_bob, b"fourth: the pool is used up")
    used = [s.prekey_id for s in sent]
    assert sorted(used[:3]) == sorted(p.prekey_id for p in fresh) and used[3] == 0
    report = await _recv(mesh, bob)
    assert sorted(m.body for m in report.delivered) == sorted(
        [b"p" * 5000, b"third", b"fourth: the pool is used up"])
    # Once the prekeys' lifetime is over the sender forgets them.
    await _send(mesh, alice, to_bob, b"later", now=NOW + 86401)
    assert alice[1].spent_prekeys == {}


@pytest_twisted.ensureDeferred
async def test_a_walk_where_nothing_can_be_read_is_an_error():
    from dmfdns.client.resolver import ReadError
    mesh, alice, bob, to_bob = _pair()
    rid = sha256(bob[1].keys.x25519_public)
    mesh.unreadable.update(owners.slot(n, rid, "mesh.test") for n in range(10))
    with pytest.raises(ReadError):
        await _recv(mesh, bob)


# --- first contact through claims ------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_stranger_in_another_zone_is_found_through_its_claim():
    mesh = FakeMesh()
    alice, bob = make_user("alice", zone="elsewhere.example"), make_user("bob")
    to_bob = pin_each_other(alice, bob)          # alice knows bob; bob never heard of alice
    [sent] = await _send(mesh, alice, to_bob, b"hello stranger")
    assert sent.claimed
    [(_, zone, ops)] = mesh.updates
    assert zone == "mesh.test" and ops[0][1].startswith("claim-")
    report = await _recv(mesh, bob)
    assert report.delivered == []
    [intro] = report.intro
    assert intro.body == b"hello stranger" and intro.zone == "elsewhere.example"
    assert [m.body for m in bob[1].intro] == [b"hello stranger"]
    # Without the claim, bob's walk never looks at alice's zone.
    mesh2 = FakeMesh()
    mesh2.claims = False
    [sent] = await _send(mesh2, alice, to_bob, b"unseen")
    assert not sent.claimed
    bob2 = make_user("bob")
    assert (await _recv(mesh2, bob2)).intro == []


@pytest_twisted.ensureDeferred
async def test_bad_claims_are_dropped_and_a_flood_is_bounded():
    from dmfdns.client import claims
    from dmfdns.proto import claim
    from dmfdns.proto.keys import UserKeys
    mesh = FakeMesh()
    bob = make_user("bob")
    rid = sha256(bob[1].keys.x25519_public)
    owner = owners.claim(0, rid, "mesh.test")
    mesh.records[owner] = ["v=dmp1;t=claim;d=garbage"]
    for n in range(200):      # valid claims pointing at 200 different zones
        keys = UserKeys.from_x25519_private(sha256(b"flood %d" % n))
        mesh.records.setdefault(owners.claim(n % 10, rid, "mesh.test"), []).append(
            claim.sign(bytes(16), keys.ed25519_public, f"z{n}.example", n % 10, NOW,
                       NOW + 600, keys.signer))
    reads_before = len(mesh.writes)
    report = await _recv(mesh, bob)
    assert report.dropped.get("bad claim") == 1
    assert report.intro == [] and len(mesh.writes) == reads_before
    followed = await claims.pointed_slots(mesh.net, bob[0], receive.mailboxes(bob[1]), NOW,
                                          set(), receive.ReceiveReport())
    assert len(followed) == claims.MAX_CLAIMS_PER_POLL
