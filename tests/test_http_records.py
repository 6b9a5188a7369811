"""/v1/records/{name} over the real resource tree, driven with raw HTTP bytes."""

import hashlib

import pytest

from dmfdns.proto import cluster_manifest, owners, slot_manifest
from dmfdns.proto.signing import Signer
from dmfdns.store.api import StoreError, StoreFull
from http_support import NOW, Harness, request_bytes

TTL_TEXT = "value (str) and ttl (int > 0) required"


@pytest.fixture
def node():
    return Harness()


def test_publish_read_delete_round_trip(node):
    response = node.request("POST", "/v1/records/hello.mesh.test", {"value": "hi", "ttl": 60})
    assert (response.status, response.json()) == (201, {"ok": True})
    response = node.request("GET", "/v1/records/hello.mesh.test")
    assert (response.status, response.json()) == (200, {"name": "hello.mesh.test",
                                                        "values": ["hi"]})
    assert response.headers["content-type"] == "application/json"
    response = node.request("DELETE", "/v1/records/hello.mesh.test")
    assert (response.status, response.body) == (204, b"")
    assert "content-length" not in response.headers  # RFC 9110 section 8.6
    response = node.request("GET", "/v1/records/hello.mesh.test")
    assert (response.status, response.json()) == (404, {"name": "hello.mesh.test", "values": []})


def test_names_are_canonical_at_ingress(node):
    assert node.request("POST", "/v1/records/Hello.MESH.Test.", {"value": "v"}).status == 201
    assert [v.value for v in node.store.get("hello.mesh.test", NOW)] == ["v"]
    response = node.request("GET", "/v1/records/HELLO.mesh.test")
    assert response.json() == {"name": "hello.mesh.test", "values": ["v"]}


def test_ttl_defaults_to_300_and_sets_the_expiry(node):
    node.request("POST", "/v1/records/a.mesh.test", {"value": "x"})
    (entry,) = node.store.get("a.mesh.test", NOW)
    assert entry.expiry == NOW + 300


def test_no_content_type_is_needed_and_a_name_may_be_percent_encoded(node):
    raw = request_bytes("POST", "/v1/records/a%2Emesh%2Etest/", b'{"value":"pct"}')
    assert b"Content-Type" not in raw
    assert node.raw(raw).responses()[0].status == 201
    assert [v.value for v in node.store.get("a.mesh.test", NOW)] == ["pct"]


@pytest.mark.parametrize("body", [
    b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000,
    b'{"value": "x", "ttl": 1' + b"0" * 5000 + b"}",
])
def test_malformed_bodies_are_400_invalid_body(node, body):
    response = node.request("POST", "/v1/records/a.mesh.test", body)
    assert (response.status, response.json()) == (400, {"error": "invalid body"})


@pytest.mark.parametrize("payload", [
    {}, {"value": 5}, {"value": None}, {"value": "x", "ttl": "60"}, {"value": "x", "ttl": 0},
    {"value": "x", "ttl": -1}, {"value": "x", "ttl": True}, {"value": "x", "ttl": 1.5},
    {"ttl": 60}, {"value": ["x"]},
])
def test_wrong_types_get_the_reference_message(node, payload):
    response = node.request("POST", "/v1/records/a.mesh.test", payload)
    assert (response.status, response.json()) == (400, {"error": TTL_TEXT})


def test_an_empty_post_is_the_types_error_as_in_the_reference(node):
    response = node.request("POST", "/v1/records/a.mesh.test")
    assert (response.status, response.json()) == (400, {"error": TTL_TEXT})


def test_caps_and_validators(node):
    cases = [
        ("a.mesh.test", {"value": "x", "ttl": 86401}, 400, "ttl exceeds cap of 86400s"),
        ("a.mesh.test", {"value": "x" * 2049}, 400, "value exceeds cap of 2048 bytes"),
        ("bad..name.mesh.test", {"value": "x"}, 400, "invalid record name"),
        ("example.com", {"value": "x"}, 400, "record name is outside the served zones"),
        ("a.mesh.test", {"value": 'a "quoted" value'}, 400, "invalid record value"),
    ]
    for name, payload, status, error in cases:
        response = node.request("POST", f"/v1/records/{name}", payload)
        assert (response.status, response.json()) == (status, {"error": error}), name
    assert node.store.stats().values == 0


def test_a_full_rrset_is_413_with_the_reference_message(node):
    for i in range(64):
        assert node.request("POST", "/v1/records/full.mesh.test", {"value": f"v{i}"}).status \
            == 201
    response = node.request("POST", "/v1/records/full.mesh.test", {"value": "one more"})
    assert (response.status, response.json()) == (
        413, {"error": "RRset at full.mesh.test already holds 64 values"})
    # Re-publishing a present value refreshes it.
    assert node.request("POST", "/v1/records/full.mesh.test", {"value": "v3"}).status == 201


def test_dmp_values_are_verified_and_refusals_are_counted(node):
    response = node.request("POST", f"/v1/records/chunk-0000-{'ab' * 6}.mesh.test",
                            {"value": "v=dmp1;t=chunk;d=AAAA"})
    assert response.status == 400
    assert response.json()["error"].startswith("invalid record value")
    response = node.request("POST", "/v1/records/slot-1.mb-abcdefabcdef.mesh.test",
                            {"value": "plain words"})
    assert response.status == 400
    assert node.metric("dmfdns_writes_refused_total",
                       {"path": "http", "reason": "invalid_record"}) == 1
    assert node.metric("dmfdns_writes_refused_total",
                       {"path": "http", "reason": "not_dmp"}) == 1
    assert node.metric("dmfdns_writes_accepted_total", {"path": "http"}) == 0


def test_a_signed_slot_manifest_is_accepted_at_its_mailbox(node):
    alice = Signer(hashlib.sha256(b"http/alice").digest())
    recipient = hashlib.sha256(b"bob x25519").digest()
    value = slot_manifest.sign(bytes(16), alice.public_key, recipient, 1, 1, 0, int(NOW),
                               int(NOW) + 300, [bytes(32)], alice)
    name = f"slot-0.mb-{hashlib.sha256(recipient).hexdigest()[:12]}.mesh.test"
    assert node.request("POST", f"/v1/records/{name}", {"value": value, "ttl": 300}).status \
        == 201
    assert node.metric("dmfdns_writes_accepted_total", {"path": "http"}) == 1


def test_delete_one_value_or_the_whole_rrset(node):
    for value in ("a", "b", "c"):
        node.request("POST", "/v1/records/set.mesh.test", {"value": value})
    assert node.request("DELETE", "/v1/records/set.mesh.test", {"value": "b"}).status == 204
    assert node.request("GET", "/v1/records/set.mesh.test").json()["values"] == ["a", "c"]
    response = node.request("DELETE", "/v1/records/set.mesh.test", {"value": "zz"})
    assert (response.status, response.body) == (404, b"")
    assert node.request("DELETE", "/v1/records/set.mesh.test").status == 204
    assert node.store.get("set.mesh.test", NOW) == []
    assert node.request("DELETE", "/v1/records/set.mesh.test").status == 404


def test_delete_checks_its_body_and_name(node):
    response = node.request("DELETE", "/v1/records/a.mesh.test", {"value": 3})
    assert (response.status, response.json()) == (400, {"error": "invalid body"})
    response = node.request("DELETE", "/v1/records/a.mesh.test", b"{oops")
    assert response.status == 400
    response = node.request("DELETE", "/v1/records/outside.example")
    assert (response.status, response.json()) == (
        400, {"error": "record name is outside the served zones"})


def test_get_of_a_bad_or_foreign_name_is_400(node):
    assert node.request("GET", "/v1/records/-bad-.mesh.test").json() == {
        "error": "invalid record name"}
    assert node.request("GET", "/v1/records/example.com").status == 400


def test_paths_and_methods(node):
    assert node.request("GET", "/v1/records/").status == 404
    assert node.request("GET", "/v1/records").status == 404
    assert node.request("GET", "/v1/records/a.mesh.test/extra").status == 404
    assert node.request("GET", "/v1/nothing").json() == {"error": "not found"}
    response = node.request("PUT", "/v1/records/a.mesh.test", {"value": "x"})
    assert response.status == 405
    assert response.headers["allow"] == "GET, POST, DELETE, HEAD"
    assert response.json() == {"error": "method not allowed"}
    response = node.request("BREW", "/v1/records/a.mesh.test")
    assert response.status == 405
    assert node.metric("dmfdns_http_requests_total",
                       {"handler": "records", "method": "other", "code": "405"}) == 1


def test_head_sends_the_get_headers_without_a_body(node):
    node.request("POST", "/v1/records/h.mesh.test", {"value": "hello"})
    get = node.request("GET", "/v1/records/h.mesh.test")
    connection = node.raw(request_bytes("HEAD", "/v1/records/h.mesh.test"))
    head = connection.output()
    assert head.endswith(b"\r\n\r\n")  # nothing after the headers
    assert b"Content-Length: %d" % len(get.body) in head
    assert b"200 OK" in head


def test_rate_limit_per_client_with_refill():
    node = Harness(site_options={"rate_limit": 1.0, "rate_burst": 2})
    statuses = [node.request("GET", "/v1/records/a.mesh.test").status for _ in range(3)]
    assert statuses == [404, 404, 429]
    assert node.request("GET", "/v1/records/a.mesh.test").json() == {
        "error": "rate limit exceeded"}
    assert node.request("GET", "/v1/records/a.mesh.test", host="127.0.0.2").status == 404
    node.clock.advance(1.0)
    assert node.request("GET", "/v1/records/a.mesh.test").status == 404
    # Health is never rate limited.
    assert node.request("GET", "/health").status == 200


def test_forwarded_for_counts_only_through_a_trusted_proxy():
    node = Harness(site_options={"rate_limit": 1.0, "rate_burst": 1,
                                 "trusted_proxies": ["10.0.0.0/8"]})
    via_proxy = {"X-Forwarded-For": "198.51.100.7"}
    assert node.request("GET", "/v1/records/a.mesh.test", headers=via_proxy,
                        host="10.1.1.1").status == 404
    # Another user behind the same proxy has a bucket of their own...
    assert node.request("GET", "/v1/records/a.mesh.test",
                        headers={"X-Forwarded-For": "198.51.100.8"}, host="10.1.1.1").status \
        == 404
    # ...while the first one is limited, whichever proxy it comes through.
    assert node.request("GET", "/v1/records/a.mesh.test", headers=via_proxy,
                        host="10.2.2.2").status == 429
    # An untrusted peer cannot borrow someone else's address.
    assert node.request("GET", "/v1/records/a.mesh.test",
                        headers={"X-Forwarded-For": "203.0.113.1"}, host="192.0.2.1").status \
        == 404
    assert node.request("GET", "/v1/records/a.mesh.test",
                        headers={"X-Forwarded-For": "203.0.113.1"}, host="192.0.2.1").status \
        == 429


class _FailingStore:
    def __init__(self, store, error):
        self._store, self._error = store, error

    def __getattr__(self, name):
        return getattr(self._store, name)

    def write_many(self, *args, **kwargs):
        raise self._error


@pytest.mark.parametrize("error, status, body", [
    (StoreFull("map full"), 507, {"ok": False,
                                  "error": "the store is full; writes are refused"}),
    (StoreError("disk says no"), 502, {"ok": False, "error": "disk says no"}),
    (RuntimeError("a bug with a secret path /etc/x"), 500, {"error": "internal error"}),
])
def test_store_failures_map_to_statuses_without_tracebacks(node, error, status, body):
    node.writes.store = _FailingStore(node.store, error)
    response = node.request("POST", "/v1/records/a.mesh.test", {"value": "x"})
    assert (response.status, response.json()) == (status, body)
    assert b"Traceback" not in response.body


def test_operator_pushes_a_cluster_manifest_with_the_operator_token():
    operator = Signer(hashlib.sha256(b"http/operator").digest())
    node = Harness(auth_mode="legacy", operator_token="op-secret",
                   write_options={"operator_key": operator.public_key,
                                  "cluster_base": "mesh.test"})
    node_entry = cluster_manifest.ClusterNode("n1", "http://127.0.0.1:8053", None)
    wire = cluster_manifest.sign(2, int(NOW) + 3600, operator.public_key, "mesh.test",
                                 [node_entry], operator)
    path = "/v1/records/" + owners.cluster("mesh.test")
    assert node.request("POST", path, {"value": wire, "ttl": 3600}).status == 401
    response = node.request("POST", path, {"value": wire, "ttl": 3600},
                            headers={"Authorization": "Bearer op-secret"})
    assert response.status == 201
    stranger = Signer(bytes(32))
    forged = cluster_manifest.sign(3, int(NOW) + 3600, stranger.public_key, "mesh.test",
                                   [node_entry], stranger)
    response = node.request("POST", path, {"value": forged, "ttl": 3600},
                            headers={"Authorization": "Bearer op-secret"})
    assert response.status == 400
