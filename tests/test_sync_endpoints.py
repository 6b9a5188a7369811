"""/v1/sync/* over the real site: the reference's exact shapes and limits for a dnsmesh peer,
the extensions only for a caller that asks, and the sync token."""

import hashlib
import itertools

import pytest

from dmfdns.http.ratelimit import TokenBucketLimiter
from dmfdns.http.sync_resources import SyncApi
from dmfdns.store.api import Cursor
from dmfdns.slicing import Slicer
from dmfdns.sync.fullset import FullSetIndex, bucket_of
from http_support import NOW, Harness, request_bytes
from sync_harness import OPERATOR, sign_manifest

TOKEN = "sync-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXT = {**AUTH, "X-Dmfdns-Sync": "1"}


@pytest.fixture
def node():
    harness = Harness()
    wire = sign_manifest(["n1", "n2"])
    from dmfdns.proto import cluster_manifest
    record = cluster_manifest.decode(wire, OPERATOR.public_key)
    harness.index = FullSetIndex(harness.store)
    SyncApi(store=harness.store, token=TOKEN,
            limiter=TokenBucketLimiter(1e6, 1e6, harness.clock.seconds),
            current_manifest=lambda now: (wire, record),
            index=harness.index).mount(harness.http)
    harness.wire = wire
    for i in range(5):
        harness.store.put(f"r{i}.mesh.test", f"value{i}", expiry=NOW + 600, now=NOW)
    harness.store.delete("r0.mesh.test", now=NOW)
    harness.clock.advance(2)
    return harness


def test_digest_has_exactly_the_reference_shape_and_no_tombstones(node):
    response = node.request("GET", "/v1/sync/digest?cursor=0::&limit=2", headers=AUTH)
    assert response.status == 200 and "x-dmfdns-sync" not in response.headers
    body = response.json()
    assert set(body) == {"records", "has_more", "next_cursor"}
    assert [set(e) for e in body["records"]] == [{"name", "hash", "ts", "ttl"}] * 2
    assert body["records"][0]["name"] == "r1.mesh.test"          # r0 is a tombstone
    assert body["records"][0]["hash"] == hashlib.sha256(b"value1").hexdigest()
    assert body["records"][0]["ttl"] == 598 and body["has_more"] is True
    ts, name, value_hash = body["next_cursor"].split(":")
    assert (int(ts), name, value_hash) == (body["records"][1]["ts"], "r2.mesh.test",
                                           body["records"][1]["hash"])
    rest = node.request("GET", f"/v1/sync/digest?cursor={body['next_cursor']}",
                        headers=AUTH).json()
    assert [e["name"] for e in rest["records"]] == ["r3.mesh.test", "r4.mesh.test"]
    assert rest["has_more"] is False


def test_extended_digest_carries_versions_and_tombstones(node):
    response = node.request("GET", "/v1/sync/digest", headers=EXT)
    assert response.headers["x-dmfdns-sync"] == "1"
    records = response.json()["records"]
    first = records[-1]                   # the delete moved r0 to the tail of the log
    assert first["deleted"] is True and first["name"] == "r0.mesh.test"
    assert not any(r["deleted"] for r in records[:-1])
    assert set(first) == {"name", "hash", "ts", "ttl", "deleted", "written_ms", "origin",
                          "expiry_ms"}
    assert first["expiry_ms"] == (NOW + 600) * 1000 and first["origin"] == "test"


@pytest.mark.parametrize("query", ["cursor=abc", "cursor=1:x:nothex", "limit=0", "limit=-3",
                                   "limit=ten", "since=x"])
def test_bad_cursor_limit_or_since_is_400(node, query):
    response = node.request("GET", f"/v1/sync/digest?{query}", headers=AUTH)
    assert response.status == 400 and "error" in response.json()


def test_legacy_since_and_a_limit_clamped_to_ten_thousand(node):
    body = node.request("GET", "/v1/sync/digest?since=0&limit=999999", headers=AUTH).json()
    assert len(body["records"]) == 4 and body["has_more"] is False
    empty = node.request("GET", f"/v1/sync/digest?since={int(NOW * 1000) + 10**6}",
                         headers=AUTH).json()
    assert empty["records"] == [] and empty["next_cursor"].startswith(
        str(int(NOW * 1000) + 10**6))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_without_the_sync_token_every_endpoint_is_403(node, headers):
    for method, path, body in (("GET", "/v1/sync/digest", None),
                               ("POST", "/v1/sync/pull", {"names": []}),
                               ("GET", "/v1/sync/cluster-manifest", None),
                               ("GET", "/v1/sync/x-dmfdns/summary", None)):
        response = node.request(method, path, body, headers=headers)
        assert (response.status, response.json()) == (403, {"error": "forbidden"})


def test_pull_returns_all_live_values_with_the_reference_fields(node):
    node.store.put("r1.mesh.test", "second", expiry=NOW + 60, now=NOW + 2)
    body = node.request("POST", "/v1/sync/pull",
                        {"names": ["R1.mesh.test.", "r0.mesh.test", "nope.mesh.test"]},
                        headers=AUTH).json()
    assert body == {"records": [{"name": "r1.mesh.test", "value": "value1", "ttl": 598},
                                {"name": "r1.mesh.test", "value": "second", "ttl": 58}]}


@pytest.mark.parametrize("body, message", [
    ({"names": "x"}, "names must be a list"),
    ({"names": [1]}, "names must be strings"),
    ({"names": ["a"] * 257}, "at most 256 names per request"),
    (b"[not json", "invalid body")])
def test_pull_refusals_use_the_reference_texts(node, body, message):
    response = node.request("POST", "/v1/sync/pull", body, headers=AUTH)
    assert (response.status, response.json()) == (400, {"error": message})


def test_extended_pull_narrows_to_hashes_and_includes_tombstones(node):
    node.store.put("r1.mesh.test", "second", expiry=NOW + 60, now=NOW + 2)
    wanted = hashlib.sha256(b"second").hexdigest()
    records = node.request("POST", "/v1/sync/pull",
                           {"names": ["r1.mesh.test", "r0.mesh.test"],
                            "hashes": [wanted, hashlib.sha256(b"value0").hexdigest()]},
                           headers=EXT).json()["records"]
    assert [(r["value"], r["deleted"]) for r in records] == [("second", False),
                                                             ("value0", True)]


def test_cluster_manifest_answers_the_wire_or_204(node):
    body = node.request("GET", "/v1/sync/cluster-manifest", headers=AUTH).json()
    assert body == {"wire": node.wire, "seq": 1, "exp": int(NOW) + 30 * 86400,
                    "cluster_name": "mesh.test"}
    harness = Harness()
    SyncApi(store=harness.store, token=TOKEN,
            limiter=TokenBucketLimiter(1e6, 1e6, harness.clock.seconds)).mount(harness.http)
    assert harness.request("GET", "/v1/sync/cluster-manifest", headers=AUTH).status == 204
    assert harness.request("GET", "/v1/sync/x-dmfdns/summary", headers=AUTH).status == 404


def test_summary_matches_a_root_and_lists_buckets_otherwise(node):
    summary = node.request("GET", "/v1/sync/x-dmfdns/summary", headers=EXT).json()
    assert summary["count"] == 5 and len(summary["buckets"]) >= 1
    matched = node.request("GET", f"/v1/sync/x-dmfdns/summary?root={summary['root']}",
                           headers=EXT).json()
    assert matched == {"root": summary["root"], "count": 5, "match": True}
    label = sorted(summary["buckets"])[0]
    listing = node.request("GET", f"/v1/sync/x-dmfdns/bucket?bucket={label}",
                           headers=EXT).json()
    assert listing["bucket"] == label and listing["records"] and not listing["has_more"]
    assert node.request("GET", "/v1/sync/x-dmfdns/bucket?bucket=zz",
                        headers=EXT).status == 400


def test_a_digest_page_and_a_pull_are_read_in_slices_with_reactor_turns_between():
    harness = Harness()
    # A slice is always over: every step of the page and every pulled name waits a turn.
    slicer = Slicer(harness.clock, timer=itertools.count().__next__, seconds=0.5)
    index = FullSetIndex(harness.store)
    SyncApi(store=harness.store, token=TOKEN,
            limiter=TokenBucketLimiter(1e6, 1e6, harness.clock.seconds),
            slicer=slicer, index=index).mount(harness.http)
    harness.store.put_many([(f"s{i}.mesh.test", f"value{i}", NOW + 600) for i in range(250)],
                           now=NOW)
    harness.clock.advance(2)
    whole = harness.store.changes_after(Cursor(), 250, now=harness.clock.seconds())
    asking = harness.connect()
    asking.channel.dataReceived(request_bytes("GET", "/v1/sync/digest?limit=250", headers=EXT))
    assert asking.responses() == [] and slicer.pauses == 1   # 100 entries, then a turn
    harness.clock.advance(0)
    body = asking.responses()[0].json()
    assert slicer.pauses == 2                            # 100, 100, then the last 50
    assert [r["hash"] for r in body["records"]] == [c.value_hash for c in whole.changes]
    assert body["has_more"] is False and len(body["records"]) == 250
    names = [f"s{i}.mesh.test" for i in range(5)]
    pulling = harness.connect()
    pulling.channel.dataReceived(request_bytes("POST", "/v1/sync/pull", {"names": names}, EXT))
    assert pulling.responses() == []
    harness.clock.advance(0)
    assert [r["name"] for r in pulling.responses()[0].json()["records"]] == names
    assert slicer.pauses == 2 + 4                        # a turn between the names
    bucket = bucket_of("s1.mesh.test")
    listing = harness.connect()
    listing.channel.dataReceived(request_bytes(
        "GET", f"/v1/sync/x-dmfdns/bucket?bucket={bucket:02x}", headers=EXT))
    assert listing.responses() == []                     # its entries read, then a turn
    harness.clock.advance(0)
    assert listing.responses()[0].json() == index.listing(
        bucket, None, 1000, round(harness.clock.seconds() * 1000))
