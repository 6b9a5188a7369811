"""``/v1/registration/*`` over the real twisted.web site (StringTransport, task.Clock):
fields, statuses and check order of the reference, single-use challenges, anti-takeover,
X25519 proof of possession, the per-client limit, and the credentials it leaves behind."""

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from dmfdns.http.ratelimit import TokenBucketLimiter
from dmfdns.http.registration import RegistrationApi, RegistrationSettings
from dmfdns.proto import authority, registration
from dmfdns.proto.signing import Signer
from http_support import Harness

HOST = "dmp.mesh.test"
ALICE = Signer(hashlib.sha256(b"registration/alice").digest())
MALLORY = Signer(hashlib.sha256(b"registration/mallory").digest())


def node(allowlist=(), burst=100, tsig_scope="standard"):
    harness = Harness(auth_mode="multi-tenant", operator_token="operator-secret",
                      site_options={"trusted_proxies": ["10.0.0.0/8"]})
    harness.registration = RegistrationApi(
        credentials=harness.tokens, clock=harness.clock,
        settings=RegistrationSettings(node_hostname=HOST, zone="mesh.test",
                                      allowlist=tuple(allowlist), tsig_scope=tsig_scope),
        limiter=TokenBucketLimiter(5 / 3600, burst, harness.clock.seconds))
    harness.registration.mount(harness.http)
    return harness


def challenge(harness, **connect):
    response = harness.request("GET", "/v1/registration/challenge", **connect)
    assert response.status == 200, response.body
    return response.json()


def signed(harness, signer=ALICE, subject="Alice@Mesh.Test", node_name=HOST, **extra):
    issued = challenge(harness)
    canonical = subject.strip().lower()
    payload = registration.signed_payload(bytes.fromhex(issued["challenge"]), canonical,
                                          node_name)
    body = {"subject": subject, "ed25519_spk": signer.public_key.hex(),
            "challenge": issued["challenge"], "signature": signer.sign(payload).hex()}
    body.update(extra)
    return body, issued


def test_the_challenge_has_the_reference_fields():
    body = challenge(node())
    assert set(body) == {"challenge", "node", "expires_at", "server_x25519_pub", "version"}
    assert len(bytes.fromhex(body["challenge"])) == 32 and body["node"] == HOST
    assert len(bytes.fromhex(body["server_x25519_pub"])) == 32 and body["version"] == 1


def test_confirm_issues_a_token_that_writes_the_users_own_names():
    harness = node()
    body, _ = signed(harness)
    response = harness.request("POST", "/v1/registration/confirm", body)
    assert response.status == 200, response.body
    reply = response.json()
    assert set(reply) == {"token", "subject", "expires_at", "rate_per_sec", "rate_burst"}
    assert reply["subject"] == "alice@mesh.test" and reply["token"].startswith("dmp_v1_")
    record = harness.tokens.lookup_token(reply["token"])
    assert record.registered_spk == ALICE.public_key.hex() and record.issuer == "registration"
    assert authority.user_may_write(record.subject, "dmp.alice.mesh.test", "publish")


def test_a_challenge_is_used_once_and_expires():
    harness = node()
    body, _ = signed(harness)
    assert harness.request("POST", "/v1/registration/confirm", body).status == 200
    again = harness.request("POST", "/v1/registration/confirm", body)
    assert (again.status, again.json()) == (400, {"error": "challenge expired or unknown"})
    body, _ = signed(harness)
    harness.clock.advance(61)
    assert harness.request("POST", "/v1/registration/confirm", body).status == 400


@pytest.mark.parametrize("change, status, error", [
    ({"signature": "00" * 64}, 401, "signature verification failed"),
    ({"subject": "bob@mesh.test"}, 401, "signature verification failed"),
    ({"subject": "not a subject"}, 400, "subject invalid"),
    ({"ed25519_spk": "zz"}, 400, "ed25519_spk: not valid hex"),
    ({"signature": "abcd"}, 400, "signature: expected 64 bytes, got 2"),
    ({"challenge": 7}, 400, "missing or non-string field: challenge"),
])
def test_bad_requests_get_the_reference_statuses(change, status, error):
    harness = node()
    body, _ = signed(harness)
    body.update(change)
    response = harness.request("POST", "/v1/registration/confirm", body)
    assert response.status == status and error in response.json()["error"]


def test_a_signature_for_another_node_hostname_is_refused():
    harness = node()
    body, _ = signed(harness, node_name="other.example")
    assert harness.request("POST", "/v1/registration/confirm", body).status == 401


def test_the_allowlist_is_checked_only_after_the_signature():
    harness = node(allowlist=["example.org"])
    body, _ = signed(harness)
    assert harness.request("POST", "/v1/registration/confirm", body).status == 403
    body, _ = signed(harness)
    body["signature"] = "00" * 64
    assert harness.request("POST", "/v1/registration/confirm", body).status == 401


def test_another_key_cannot_take_a_registered_subject():
    harness = node()
    first = harness.request("POST", "/v1/registration/confirm", signed(harness)[0]).json()
    response = harness.request("POST", "/v1/registration/confirm",
                               signed(harness, MALLORY)[0])
    assert response.status == 409
    assert harness.request("POST", "/v1/registration/tsig-confirm",
                           signed(harness, MALLORY)[0]).status == 409
    # The same key re-registering supersedes its earlier token.
    second = harness.request("POST", "/v1/registration/confirm", signed(harness)[0]).json()
    assert harness.tokens.lookup_token(first["token"]).revoked_at is not None
    assert harness.tokens.lookup_token(second["token"]).live(harness.clock.seconds())


def x25519_pair():
    private = X25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    return private, private.public_key().public_bytes(raw, serialization.PublicFormat.Raw)


def pop(private, issued, subject, public):
    shared = private.exchange(X25519PublicKey.from_public_bytes(
        bytes.fromhex(issued["server_x25519_pub"])))
    return hmac.new(shared, bytes.fromhex(issued["challenge"]) + subject.encode() + public,
                    hashlib.sha256).hexdigest()


def test_tsig_confirm_mints_a_key_with_the_reference_name_and_scope():
    harness = node()
    private, public = x25519_pair()
    body, issued = signed(harness)
    body.update(x25519_pub=public.hex(), x25519_pop=pop(private, issued, "alice@mesh.test",
                                                        public))
    response = harness.request("POST", "/v1/registration/tsig-confirm", body)
    assert response.status == 200, response.body
    reply = response.json()
    assert set(reply) == {"tsig_key_name", "tsig_secret_hex", "tsig_algorithm",
                          "allowed_suffixes", "subject", "zone", "expires_at"}
    tag = hashlib.sha256(b"alice@mesh.test").hexdigest()[:6]
    assert reply["tsig_key_name"] == f"alice-{ALICE.public_key.hex()[:8]}-{tag}.mesh.test."
    assert reply["tsig_algorithm"] == "hmac-sha256" and len(reply["tsig_secret_hex"]) == 64
    mailbox = hashlib.sha256(hashlib.sha256(public).digest()).hexdigest()[:12]
    assert f"mb-{mailbox}.mesh.test" in reply["allowed_suffixes"]
    assert "slot-*.mb-*.mesh.test" in reply["allowed_suffixes"]
    key = harness.tokens.tsig_key(reply["tsig_key_name"].rstrip("."), harness.clock.seconds())
    assert key.secret.hex() == reply["tsig_secret_hex"]


def test_a_wrong_proof_of_possession_is_401_and_a_missing_one_drops_the_mailbox():
    harness = node(tsig_scope="tight")
    private, public = x25519_pair()
    body, issued = signed(harness)
    body.update(x25519_pub=public.hex(), x25519_pop="00" * 32)
    assert harness.request("POST", "/v1/registration/tsig-confirm", body).status == 401
    body, _ = signed(harness)
    body.update(x25519_pub=public.hex())
    reply = harness.request("POST", "/v1/registration/tsig-confirm", body).json()
    assert not any(s.startswith("mb-") for s in reply["allowed_suffixes"])
    assert not any("*" in s for s in reply["allowed_suffixes"])        # tight scope


def test_the_limit_is_per_client_behind_a_trusted_proxy():
    harness = node(burst=2)
    proxy = {"host": "10.0.0.1"}
    for client in ("192.0.2.1", "192.0.2.2"):
        headers = {"X-Forwarded-For": client}
        statuses = [harness.request("GET", "/v1/registration/challenge", headers=headers,
                                    **proxy).status for _ in range(3)]
        assert statuses == [200, 200, 429]
    response = harness.request("GET", "/v1/registration/challenge", host="192.0.2.9")
    assert response.status == 200


def test_disabled_registration_is_not_found():
    harness = Harness(auth_mode="multi-tenant", operator_token="operator-secret")
    response = harness.request("GET", "/v1/registration/challenge")
    assert (response.status, response.json()) == (404, {"error": "not found"})
