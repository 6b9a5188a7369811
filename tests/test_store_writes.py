"""The one write service (``dmfdns.store.writes``) over MemoryStore and a real LmdbStore:
authorization, in-batch admission, all-or-nothing batches, one-transaction commits, metrics.
"""

import hashlib

import pytest

from dmfdns.proto import authority, identity, owners, prekey
from dmfdns.proto.admission import Limits, Refusal
from dmfdns.proto.signing import Signer
from dmfdns.store.api import StoreError
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.memory_store import MemoryStore
from dmfdns.store.writes import (DELETE, PUBLISH, UNAUTHORIZED, Accepted, WriteRequest,
                                 WriteService)

NOW = 1_800_000_000
ZONE = "mesh.test"
ALICE = Signer(hashlib.sha256(b"writes/alice").digest())
ALICE_ID = owners.identity_hashed("alice", ZONE)
ALICE_PREKEYS = owners.prekeys("alice", ZONE)


@pytest.fixture(params=["memory", "lmdb"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore(node_id="n1")
    else:
        lmdb_store = LmdbStore(tmp_path / "db", map_size=2**24, node_id="n1")
        yield lmdb_store
        lmdb_store.close()


def service(store, **options):
    decisions = []
    writes = WriteService(store, zones=(ZONE,), limits=Limits(max_values_per_name=3),
                          observe=lambda *d: decisions.append(d), **options)
    return writes, decisions


def put(name, value, ttl=600):
    return WriteRequest(PUBLISH, name, value, ttl)


def values(store, name):
    return [v.value for v in store.get(name, NOW + 1)]


def test_a_batch_is_committed_in_one_transaction(store):
    writes, decisions = service(store)
    before = store.generation()
    outcome = writes.write([put("a.mesh.test", "one"), put("B.Mesh.Test.", "two"),
                            WriteRequest(DELETE, "a.mesh.test", "one")], now=NOW, path="http")
    assert outcome.committed and outcome.changed == (1, 1, 1)
    assert store.generation() == before + 1          # one commit for the whole batch
    assert values(store, "a.mesh.test") == [] and values(store, "b.mesh.test") == ["two"]
    assert [d[:2] for d in decisions] == [("http", True)] * 3


def test_a_refused_write_makes_an_atomic_batch_change_nothing(store):
    writes, decisions = service(store)
    store.put("a.mesh.test", "kept", expiry=NOW + 600, now=NOW)
    before = (store.generation(), store.stats().values)
    outcome = writes.write([WriteRequest(DELETE, "a.mesh.test", None),
                            put("b.mesh.test", "fine"), put("elsewhere.example", "x")],
                           now=NOW, path="update")
    assert not outcome.committed
    assert [type(r) for r in outcome.results] == [Accepted, Accepted, Refusal]
    assert outcome.refusals[0].reason == "zone"
    assert (store.generation(), store.stats().values) == before
    assert values(store, "a.mesh.test") == ["kept"] and values(store, "b.mesh.test") == []
    assert decisions[-1] == ("update", False, "zone")


def test_a_non_atomic_batch_stores_the_admitted_writes(store):
    writes, _ = service(store)
    outcome = writes.write([put("b.mesh.test", "fine"), put("bad name!.mesh.test", "x")],
                           now=NOW, path="cli", atomic=False)
    assert outcome.committed and values(store, "b.mesh.test") == ["fine"]


def test_the_rrset_cap_counts_earlier_writes_of_the_batch_and_its_deletes(store):
    writes, _ = service(store)
    results = writes.admit([put("a.mesh.test", str(n)) for n in range(4)], now=NOW, path="x")
    assert [isinstance(r, Accepted) for r in results] == [True, True, True, False]
    assert results[3].reason == "rrset_full"
    # A delete earlier in the same batch makes room (RFC 2136: ops apply in order).
    for n in range(3):
        store.put("c.mesh.test", str(n), expiry=NOW + 600, now=NOW)
    results = writes.admit([WriteRequest(DELETE, "c.mesh.test", "0"), put("c.mesh.test", "new")],
                           now=NOW, path="x")
    assert all(isinstance(r, Accepted) for r in results)


def test_a_prekey_verifies_against_an_identity_in_the_same_batch(store):
    writes, _ = service(store)
    ident = identity.sign("alice", bytes(range(32)), ALICE.public_key, NOW, ALICE)
    keys = prekey.sign(7, bytes(range(32, 64)), NOW + 86400, ALICE)
    forged = prekey.sign(7, bytes(range(32, 64)), NOW + 86400,
                         Signer(hashlib.sha256(b"writes/mallory").digest()))
    outcome = writes.write([put(ALICE_ID, ident), put(ALICE_PREKEYS, keys)], now=NOW,
                           path="cli")
    assert outcome.committed
    refused = writes.admit([put(ALICE_PREKEYS, forged)], now=NOW, path="cli")[0]
    assert isinstance(refused, Refusal) and refused.reason == "invalid_record"


def test_credentials_are_checked_per_write(store):
    writes, decisions = service(store)
    user = authority.UserToken("bob@mesh.test")
    result = writes.admit([put(ALICE_ID, "x")], now=NOW, path="http", credential=user)[0]
    assert result == Refusal(UNAUTHORIZED, "unauthorized")
    assert decisions[-1] == ("http", False, UNAUTHORIZED)
    claimant = authority.CLAIMANT
    assert not writes.permits(claimant, PUBLISH, "slot-1.mb-0123456789ab.mesh.test")
    assert writes.permits(claimant, PUBLISH, "claim-1.mb-0123456789ab.mesh.test")
    assert not writes.permits(claimant, DELETE, "claim-1.mb-0123456789ab.mesh.test")


def test_a_store_failure_at_commit_writes_nothing(tmp_path):
    store = LmdbStore(tmp_path / "db", map_size=2**20, node_id="n1")
    try:
        writes, _ = service(store)
        big = [put(f"n{i}.mesh.test", "v" * 2000) for i in range(2000)]
        accepted = writes.admit(big, now=NOW, path="cli")
        before = store.stats().values
        with pytest.raises(StoreError):
            writes.commit(accepted, now=NOW)
        assert store.stats().values == before
    finally:
        store.close()


def test_write_many_checks_every_op_before_writing(store):
    with pytest.raises(StoreError):
        store.write_many([("put", "a.mesh.test", "x", NOW + 60), ("put", "bad name", "x", 1)],
                         now=NOW)
    with pytest.raises(StoreError):
        store.write_many([("rename", "a.mesh.test")], now=NOW)
    assert values(store, "a.mesh.test") == []


# --- TSIG scopes ----------------------------------------------------------------------------

SCOPE = authority.minted_suffixes(ZONE, "alice", "ab" * 32, bytes(32))


@pytest.mark.parametrize("name, op, allowed", [
    (ALICE_ID, PUBLISH, True),
    (ALICE_ID, DELETE, True),                              # a literal suffix
    (ALICE_PREKEYS, DELETE, True),                         # below id-<hash12>
    (owners.identity_hashed("bob", ZONE), PUBLISH, False),
    ("slot-3.mb-0123456789ab.mesh.test", PUBLISH, True),   # the shared wildcard
    ("slot-3.mb-0123456789ab.mesh.test", DELETE, False),   # never through a wildcard
    ("chunk-0001-0123456789ab.mesh.test", PUBLISH, True),
    ("claim-0.mb-0123456789ab.mesh.test", PUBLISH, True),
    ("x.slot-3.mb-0123456789ab.mesh.test", PUBLISH, True),  # below a covered name
    ("cluster.mesh.test", PUBLISH, False),
    ("mesh.test", PUBLISH, False),
])
def test_minted_scopes_match_the_reference_rules(name, op, allowed):
    assert authority.permits(authority.TsigScope("k.", SCOPE), op, name) is allowed


def test_the_mailbox_suffix_is_literal_so_its_owner_may_delete_there():
    mailbox = hashlib.sha256(hashlib.sha256(bytes(32)).digest()).hexdigest()[:12]
    assert f"mb-{mailbox}.{ZONE}" in SCOPE
    assert authority.scope_permits(SCOPE, f"slot-1.mb-{mailbox}.{ZONE}", DELETE)
    tight = authority.minted_suffixes(ZONE, "alice", "ab" * 32, None, tight=True)
    assert not authority.scope_permits(tight, "slot-1.mb-0123456789ab.mesh.test", PUBLISH)
    assert authority.minted_suffixes(ZONE, "alice", "ab" * 32, None, loose=True) == (ZONE,)
