"""Validation of what a peer sends, and the pull decision (dmfdns.sync.wire), without I/O."""

import hashlib

from hypothesis import given, strategies as st

from dmfdns.store.api import Change, Cursor
from dmfdns.sync import wire

NOW_MS = 1_800_000_000_000
H = hashlib.sha256(b"v").hexdigest()


def entry(name="a.mesh.test", ts=1000, ttl=60, **extra):
    return {"name": name, "hash": H, "ts": ts, "ttl": ttl, **extra}


def parse(records, after=Cursor(), limit=1000, extended=False, **page):
    data = {"records": records, "has_more": False, **page}
    return wire.parse_digest(data, after=after, limit=limit, now_ms=NOW_MS, extended=extended)


def test_good_entries_are_kept_and_names_made_canonical():
    page = parse([entry("A.Mesh.Test"), entry(ts=1001)])
    assert [(e.name, e.raw_name, e.ts_ms) for e in page.entries] == [
        ("a.mesh.test", "A.Mesh.Test", 1000), ("a.mesh.test", "a.mesh.test", 1001)]
    assert page.last_cursor == Cursor(1001, "a.mesh.test", H) and page.rejected == ()


def test_future_out_of_order_and_malformed_entries_are_refused_by_reason():
    page = parse([entry(ts=NOW_MS + 61_000), entry(ts=5), entry(ts=4), entry(ttl=-1, ts=6),
                  entry(name="bad name", ts=7), "junk"])
    assert [e.ts_ms for e in page.entries] == [5]
    assert page.rejected == ("future", "out_of_order", "bad_entry", "bad_entry", "bad_entry")
    assert page.last_cursor.ts_ms == 6    # a sane position still moves the cursor


def test_entries_beyond_the_limit_and_a_future_next_cursor_are_dropped():
    page = parse([entry(ts=i) for i in range(1, 6)], limit=3,
                 next_cursor=f"{NOW_MS + 10**9}:x:")
    assert len(page.entries) == 3 and "oversized_page" in page.rejected
    assert page.next_cursor is None and "bad_cursor" in page.rejected


def test_extended_entries_need_a_sane_version():
    good = entry(deleted=False, written_ms=900, origin="n1", expiry_ms=NOW_MS + 5000)
    bad = entry(ts=1001, deleted="no", written_ms=900, origin="n1", expiry_ms=NOW_MS + 5000)
    page = parse([good, bad], extended=True)
    assert len(page.entries) == 1 and page.entries[0].extended
    assert page.rejected == ("bad_entry",)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=5)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                    max_leaves=30), st.booleans())
def test_parsers_never_raise(data, extended):
    wire.parse_digest(data, after=Cursor(), limit=100, now_ms=NOW_MS, extended=extended)
    wire.parse_pull(data, now_ms=NOW_MS, extended=extended)
    wire.parse_listing(data, NOW_MS)
    if isinstance(data, dict):
        wire.parse_pull_request(data)


def local(deleted=False, written=1000, origin="n1", expiry_ms=NOW_MS + 60_000):
    return Change(1, "a.mesh.test", H, "v", expiry_ms / 1000, deleted, origin, written)


def digest_entry(**version):
    return wire.DigestEntry("a.mesh.test", H, 2000, 60, **version)


def test_wanted_extended_by_version_or_expiry():
    ext = dict(deleted=False, written_ms=1000, origin="n1", expiry_ms=NOW_MS + 60_000)
    assert not wire.wanted(digest_entry(**ext), local(), NOW_MS)
    assert wire.wanted(digest_entry(**{**ext, "written_ms": 1001}), local(), NOW_MS)
    assert wire.wanted(digest_entry(**{**ext, "deleted": True, "written_ms": 1001}),
                       local(), NOW_MS)
    assert wire.wanted(digest_entry(**{**ext, "expiry_ms": NOW_MS + 61_000}), local(), NOW_MS)
    assert wire.wanted(digest_entry(**{**ext, "deleted": True}), None, NOW_MS)


def test_wanted_from_a_reference_peer_follows_its_ttl_rule_and_respects_deletes():
    plain = wire.DigestEntry("a.mesh.test", H, 2000, 60)
    assert not wire.wanted(plain, local(), NOW_MS)                     # within 5 s slack
    assert wire.wanted(wire.DigestEntry("a.mesh.test", H, 2000, 120), local(), NOW_MS)
    assert not wire.wanted(plain, local(deleted=True, written=3000), NOW_MS)
    assert wire.wanted(plain, local(deleted=True, written=1500), NOW_MS)
    assert wire.wanted(plain, None, NOW_MS)
