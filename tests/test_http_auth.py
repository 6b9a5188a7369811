"""Write auth over HTTP: the three modes, multi-tenant owner classes, the tokens file and
the open-mode bind guard."""

import hashlib

import pytest

from dmfdns.http import auth
from dmfdns.http.auth import WriteAuth, bearer_token, same_secret
from dmfdns.proto.authority import user_may_write as may_write
from dmfdns.http.site import OpenBindRefused, check_bind
from dmfdns.store.credentials import TOKEN_PREFIX, CredentialError, Credentials, token_hash
from dmfdns.store.memory_store import MemoryStore
from dmfdns.proto import owners
from http_support import NOW, Harness

OPERATOR = {"Authorization": "Bearer operator-secret"}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


# --- helpers ----------------------------------------------------------------------------------

def test_bearer_token_parsing():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


def test_same_secret_never_matches_missing_tokens():
    assert same_secret("a", "a")
    assert not same_secret("a", "b")
    assert not same_secret("", "")
    assert not same_secret(None, None)
    assert not same_secret("é", "e")


# --- legacy mode ------------------------------------------------------------------------------

@pytest.fixture
def legacy():
    return Harness(auth_mode="legacy", operator_token="operator-secret")


def test_legacy_writes_need_the_operator_token(legacy):
    path = "/v1/records/a.mesh.test"
    for headers in (None, bearer("wrong"), {"Authorization": "operator-secret"}):
        response = legacy.request("POST", path, {"value": "x"}, headers=headers)
        assert (response.status, response.json()) == (401, {"error": "unauthorized"})
        assert legacy.request("DELETE", path, headers=headers).status == 401
    assert legacy.request("POST", path, {"value": "x"}, headers=OPERATOR).status == 201
    assert legacy.request("DELETE", path, headers=OPERATOR).status == 204


def test_reads_need_the_operator_token_when_one_is_configured(legacy):
    assert legacy.request("GET", "/v1/records/a.mesh.test").status == 401
    assert legacy.request("GET", "/v1/records/a.mesh.test", headers=OPERATOR).status == 404
    open_node = Harness()
    assert open_node.request("GET", "/v1/records/a.mesh.test").status == 404


def test_auth_comes_before_the_body_as_in_the_reference(legacy):
    response = legacy.request("POST", "/v1/records/a.mesh.test", b"{broken")
    assert response.status == 401


# --- multi-tenant -----------------------------------------------------------------------------

@pytest.fixture
def tenants():
    node = Harness(auth_mode="multi-tenant", operator_token="operator-secret")
    tokens = node.tokens
    node.alice = tokens.issue_token("alice@mesh.test", now=NOW, rate_per_sec=100,
                                    rate_burst=100)
    node.bob = tokens.issue_token("bob", now=NOW)
    return node


def post(node, name, token, value="x"):
    return node.request("POST", f"/v1/records/{name}", {"value": value},
                        headers=bearer(token) if token else None).status


def test_a_user_writes_its_own_identity_names_only(tenants):
    from dmfdns.proto import identity
    from dmfdns.proto.signing import Signer
    signer = Signer(hashlib.sha256(b"tenant alice").digest())
    wire = identity.sign("alice", bytes(32), signer.public_key, int(NOW), signer)
    assert post(tenants, owners.identity_hashed("alice", "mesh.test"), tenants.alice, wire) \
        == 201
    assert post(tenants, owners.identity_hashed("alice", "mesh.test"), tenants.bob, wire) \
        == 401
    assert post(tenants, "dmp.alice.mesh.test", tenants.alice, wire) == 201
    assert post(tenants, "dmp.alice.mesh.test", tenants.bob, wire) == 401


def test_owner_classes():
    alice = "alice@mesh.test"
    h16 = hashlib.sha256(b"alice").hexdigest()[:16]
    assert may_write(alice, f"id-{h16}.mesh.test", auth.PUBLISH)
    assert may_write(alice, f"id-{h16}.mesh.test", auth.DELETE)
    assert may_write(alice, f"prekeys.id-{h16[:12]}.mesh.test", auth.DELETE)
    assert may_write(alice, f"rotate.id-{h16}.mesh.test", auth.PUBLISH)
    assert may_write(alice, "rotate.dmp.alice.mesh.test", auth.PUBLISH)
    assert may_write("alice", f"id-{h16}.mesh.test", auth.PUBLISH)
    assert not may_write("alice", "dmp.alice.mesh.test", auth.PUBLISH)  # no domain: no anchor
    assert not may_write("bob@mesh.test", f"id-{h16}.mesh.test", auth.PUBLISH)
    for shared in ("slot-3.mb-abcdefabcdef.mesh.test", "chunk-0001-abcdefabcdef.mesh.test",
                   "claim-2.mb-abcdefabcdef.mesh.test"):
        assert may_write(alice, shared, auth.PUBLISH)
        assert not may_write(alice, shared, auth.DELETE)
    for operator_only in ("cluster.mesh.test", "_dmp.mesh.test", "www.mesh.test",
                          "_dnsmesh-heartbeat.mesh.test", "rotate.cluster.mesh.test"):
        assert not may_write(alice, operator_only, auth.PUBLISH)


def test_shared_names_take_any_live_token_but_only_the_operator_deletes(tenants):
    name = "chunk-0001-abcdefabcdef.mesh.test"
    assert post(tenants, name, tenants.bob, "v=dmp1;t=chunk;d=AAAA") == 400  # auth passed
    assert post(tenants, name, None, "v=dmp1;t=chunk;d=AAAA") == 401
    assert tenants.request("DELETE", f"/v1/records/{name}", headers=bearer(tenants.bob)) \
        .status == 401
    assert tenants.request("DELETE", f"/v1/records/{name}", headers=OPERATOR).status == 404


def test_operator_only_names(tenants):
    assert post(tenants, "www.mesh.test", tenants.alice) == 401
    assert post(tenants, "www.mesh.test", "operator-secret") == 201
    assert post(tenants, "bad..name", tenants.alice) == 401


def test_revoked_expired_and_unknown_tokens_are_refused(tenants):
    name = owners.prekeys("bob", "mesh.test")
    assert tenants.request("DELETE", f"/v1/records/{name}", headers=bearer(tenants.bob)) \
        .status == 404  # allowed, nothing there
    revoked = tenants.tokens.revoke_tokens(token_hash(tenants.bob)[:10], now=NOW)
    assert [r.subject for r in revoked] == ["bob"]
    assert tenants.request("DELETE", f"/v1/records/{name}", headers=bearer(tenants.bob)) \
        .status == 401
    carol = tenants.tokens.issue_token("carol", now=NOW, expires_at=NOW + 10)
    carol_name = owners.prekeys("carol", "mesh.test")
    assert tenants.request("DELETE", f"/v1/records/{carol_name}",
                           headers=bearer(carol)).status == 404
    tenants.clock.advance(11)
    assert tenants.request("DELETE", f"/v1/records/{carol_name}",
                           headers=bearer(carol)).status == 401
    assert tenants.request("DELETE", f"/v1/records/{carol_name}",
                           headers=bearer(TOKEN_PREFIX + "A" * 52)).status == 401


def test_a_user_token_has_its_own_bucket(tenants):
    dave = tenants.tokens.issue_token("dave", now=NOW, rate_per_sec=1, rate_burst=2)
    name = owners.prekeys("dave", "mesh.test")
    statuses = [tenants.request("DELETE", f"/v1/records/{name}", headers=bearer(dave)).status
                for _ in range(3)]
    assert statuses == [404, 404, 429]
    response = tenants.request("DELETE", f"/v1/records/{name}", headers=bearer(dave))
    assert response.json() == {"error": "per-token rate limit exceeded"}


def test_multi_tenant_needs_a_tokens_file():
    with pytest.raises(ValueError):
        WriteAuth("multi-tenant", operator_token="x", clock=lambda: 0.0)
    with pytest.raises(ValueError):
        WriteAuth("anything", clock=lambda: 0.0)


# --- the credentials store ---------------------------------------------------------------

def test_tokens_are_stored_hashed(tmp_path):
    store = MemoryStore()
    tokens = Credentials(store)
    token = tokens.issue_token("alice@mesh.test", now=NOW, note="laptop")
    assert token.startswith(TOKEN_PREFIX) and len(token) == len(TOKEN_PREFIX) + 52
    stored = b"".join(value for _, value in store.auth_scan(b""))
    assert token.encode() not in stored and token[len(TOKEN_PREFIX):].encode() not in stored
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
    record = tokens.lookup_token(token)
    assert (record.subject, record.note, record.live(NOW)) == ("alice@mesh.test", "laptop", True)
    assert tokens.lookup_token(token + "x") is None


def test_a_cached_reader_sees_changes_and_reloads_only_then():
    store = MemoryStore()
    reader, writer = Credentials(store), Credentials(store)
    assert reader.tokens() == []
    token = writer.issue_token("late", now=NOW)
    assert reader.lookup_token(token).subject == "late"
    reloads = reader.reloads
    for _ in range(100):
        reader.lookup_token(token)
    assert reader.reloads == reloads                  # cached: no rebuild per lookup
    writer.revoke_tokens(token, now=NOW + 1)
    assert reader.lookup_token(token).revoked_at == NOW + 1
    assert reader.reloads == reloads + 1


def test_revoke_needs_a_real_selector():
    tokens = Credentials(MemoryStore())
    tokens.issue_token("a", now=NOW)
    for bad in ("abc", "not-hex-at-all", ""):
        with pytest.raises(CredentialError):
            tokens.revoke_tokens(bad, now=NOW)
    with pytest.raises(CredentialError):
        tokens.issue_token("   ", now=NOW)


def test_the_audit_trail_is_bounded():
    tokens = Credentials(MemoryStore(), audit_limit=5)
    for n in range(12):
        tokens.issue_token(f"user{n}", now=NOW + n)
    trail = tokens.audit(100)
    assert [entry.subject for entry in trail] == [f"user{n}" for n in range(7, 12)]
    assert all(entry.event == "token-issued" for entry in trail)


def test_a_corrupt_credential_refuses_user_writes_without_a_traceback():
    node = Harness(auth_mode="multi-tenant", operator_token="operator-secret")
    node.store.auth_write({b"token:" + b"0" * 64: b"{not json", b"serial": b"x"})
    response = node.request("POST", "/v1/records/www.mesh.test", {"value": "x"},
                            headers=bearer("dmp_v1_whatever"))
    assert (response.status, response.json()) == (503, {"error": "token store unavailable"})
    # The operator is unaffected.
    assert node.request("POST", "/v1/records/www.mesh.test", {"value": "x"},
                        headers=OPERATOR).status == 201


# --- open mode bind guard ---------------------------------------------------------------------

def test_open_mode_refuses_non_loopback_unless_allowed():
    check_bind("open", "127.0.0.1", allow_open_non_loopback=False)
    check_bind("open", "::1", allow_open_non_loopback=False)
    with pytest.raises(OpenBindRefused):
        check_bind("open", "0.0.0.0", allow_open_non_loopback=False)
    with pytest.raises(OpenBindRefused):
        check_bind("open", "::", allow_open_non_loopback=False)
    check_bind("open", "0.0.0.0", allow_open_non_loopback=True)
    check_bind("legacy", "0.0.0.0", allow_open_non_loopback=False)
