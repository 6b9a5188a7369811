"""The answer cache: what it serves is byte-identical to what an uncached responder builds
at the same moment from the same store, across writes, deletes, sweeps, expiry, TTL
boundaries and clocks that step back (MemoryStore and LmdbStore); it is bounded, evicts the
least recently used entry, and counts what it does into the metrics."""

import pytest
from dnslib import CLASS, EDNS0, QTYPE, DNSHeader, DNSQuestion, DNSRecord, EDNSOption
from hypothesis import given, settings, strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import task

from dmfdns.dns import cookies
from dmfdns.dns.answer_cache import ENTRY_OVERHEAD, AnswerCache
from dmfdns.dns.counters import DnsCounters
from dmfdns.dns.responder import Responder, ResponderSettings
from dmfdns.dns.server import DNSDatagramProtocol
from dmfdns.dns.zone import parse_zone
from dmfdns.metrics import NodeMetrics
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.memory_store import MemoryStore

T0 = 1_700_000_000.0
ZONE = parse_zone("""\
$ORIGIN mesh.test.
$TTL 3600
@    SOA ns1 hostmaster 1 3600 600 604800 60
@    NS  ns1
ns1  A   192.0.2.53
""")
TTL = 10                      # configured answer TTL: small, so the boundaries come often
SECRET = bytes(range(16))
CACHED = ResponderSettings(answer_ttl=TTL, cookie_secret=SECRET, nsid=b"node-1")
UNCACHED = ResponderSettings(answer_ttl=TTL, cache_entries=0, cookie_secret=SECRET,
                             nsid=b"node-1")
CLIENTS = ["127.0.0.2", "::1"]
CLIENT_COOKIE = bytes.fromhex("2464c4abcf10c957")
NAMES = ["a.mesh.test", "b.a.mesh.test", "c.b.a.mesh.test", "slot-1.mb-x.mesh.test",
         "mb-x.mesh.test", "nope.mesh.test"]


def query(name, qtype=QTYPE.TXT, *, qid=1, edns=None, bits=0x0100):
    record = DNSRecord(DNSHeader(id=qid, bitmap=bits), q=DNSQuestion(name, qtype, CLASS.IN))
    if edns is not None:
        record.add_ar(edns)
    return bytes(record.pack())


def pair(store):
    """A cached and an uncached responder over the same store."""
    return Responder([ZONE], store, CACHED), Responder([ZONE], store, UNCACHED)


def ttl_of(response):
    return DNSRecord.parse(response).rr[0].ttl


# --- the properties: cached == uncached ------------------------------------------------------

LIFETIMES_MS = [500, 999, 1000, 5000, 10_000, 10_001, 12_345, 30_000]
VALUES = ["v", "w" * 40, "x" * 700]       # the last one fits TCP but not 512-byte UDP
QTYPES = [QTYPE.TXT, QTYPE.TXT, QTYPE.A]
content_items = st.lists(st.tuples(st.integers(0, len(NAMES) - 2),
                                   st.integers(0, len(VALUES) - 1),
                                   st.sampled_from(LIFETIMES_MS)), min_size=1, max_size=6)
# The per-client EDNS options a query may carry (with EDNS only): none, a client cookie,
# client + our valid server cookie, client + a stale one, NSID + cookie, padding + cookie.
EXTRAS = ["none", "client", "valid", "stale", "nsid", "padded"]
questions = st.tuples(st.integers(0, len(NAMES) - 1), st.booleans(), st.sampled_from(QTYPES),
                      st.sampled_from([None, 512, 4096]), st.sampled_from(EXTRAS),
                      st.sampled_from(CLIENTS))
transports = st.sampled_from([512, 1232, None])


def at(ms):
    """The injected clock: ``ms`` milliseconds after T0, as the reactor gives seconds."""
    return T0 + ms / 1000


def client_options(extra, client):
    if extra == "none":
        return []
    cookie = CLIENT_COOKIE
    if extra == "valid":
        cookie += cookies.server_cookie(SECRET, CLIENT_COOKIE,
                                        cookies.client_address(client), T0)
    elif extra == "stale":
        cookie += bytes(16)
    options = [EDNSOption(10, cookie)]
    if extra == "nsid":
        options.insert(0, EDNSOption(3, b""))
    elif extra == "padded":
        options.append(EDNSOption(12, bytes(20)))
    return options


def wire_of(question, qid=7):
    """``(query bytes, client address)``."""
    name, upper, qtype, payload, extra, client = question
    text = NAMES[name].upper() if upper else NAMES[name]
    edns = None if payload is None else EDNS0(udp_len=payload,
                                              opts=client_options(extra, client))
    return query(text, qtype, qid=qid, edns=edns), client


def fresh(responder, wire, now, max_udp, client):
    """What the general (dnslib) path answers: the reference every fast answer must equal."""
    return responder.respond_dnslib(wire, now=now, max_udp=max_udp, client=client)


def check_window(store, content, question, build_ms, serve_ms, udp_build, udp_serve):
    for name, value, lifetime_ms in content:
        store.put(NAMES[name], VALUES[value], expiry=at(lifetime_ms), now=T0)
    cached, uncached = pair(store)
    wire, client = wire_of(question)
    cached.respond(wire, now=at(build_ms), max_udp=udp_build, client=client)
    served = cached.respond(wire, now=at(serve_ms), max_udp=udp_serve, client=client)
    assert served == uncached.respond(wire, now=at(serve_ms), max_udp=udp_serve,
                                      client=client)
    assert served == fresh(uncached, wire, at(serve_ms), udp_serve, client)
    return cached.counters.cache_hits


@settings(max_examples=300)
@given(content=content_items, question=questions, build_ms=st.integers(0, 31_000),
       target=st.integers(0, 5), seconds_before=st.integers(0, 11), nudge=st.integers(-1, 1),
       udp_build=transports, udp_serve=transports)
def test_an_answer_is_exact_wherever_the_cache_serves_it(tmp_path_factory, content, question,
                                                          build_ms, target, seconds_before,
                                                          nudge, udp_build, udp_serve):
    """Built at one moment, asked at another: the serve time is aimed at the TTL and expiry
    boundaries (an expiry minus whole seconds, give or take a millisecond), and may be
    before the build time."""
    serve_ms = content[target % len(content)][2] - 1000 * seconds_before + nudge
    hits = check_window(MemoryStore(), content, question, build_ms, serve_ms, udp_build,
                        udp_serve)
    lmdb = LmdbStore(tmp_path_factory.mktemp("db"), map_size=16 * 2**20)
    try:
        assert check_window(lmdb, content, question, build_ms, serve_ms, udp_build,
                            udp_serve) == hits
    finally:
        lmdb.close()


operations = st.one_of(
    st.tuples(st.just("put"), st.integers(0, len(NAMES) - 2), st.integers(0, 1),
              st.sampled_from(LIFETIMES_MS + [-1000])),
    st.tuples(st.just("delete"), st.integers(0, len(NAMES) - 2)),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("tick"), st.sampled_from([1, 499, 500, 999, 1000, 1001, 4000, 9000])),
    st.tuples(st.just("back"), st.sampled_from([1, 1000, 20_000])),
    st.tuples(st.just("ask"), questions, transports, st.integers(0, 65535)),
)


def run_history(store, content, ops):
    for name, value, lifetime_ms in content:
        store.put(NAMES[name], VALUES[value], expiry=at(lifetime_ms), now=T0)
    cached, uncached = pair(store)
    now_ms = 0
    for op in ops:
        kind = op[0]
        if kind == "put":
            _, name, value, lifetime_ms = op
            store.put(NAMES[name], VALUES[value], expiry=at(now_ms + lifetime_ms),
                      now=at(now_ms))
        elif kind == "delete":
            store.delete(NAMES[op[1]], now=at(now_ms))
        elif kind == "sweep":
            store.sweep(at(now_ms), 100)
        elif kind == "tick":
            now_ms += op[1]
        elif kind == "back":
            now_ms -= op[1]
        else:
            _, question, max_udp, qid = op
            wire, client = wire_of(question, qid)
            for _ in range(2):        # the second one is a hit whenever it can be
                got = cached.respond(wire, now=at(now_ms), max_udp=max_udp, client=client)
                assert got == uncached.respond(wire, now=at(now_ms), max_udp=max_udp,
                                               client=client), (op, now_ms)
                assert got == fresh(uncached, wire, at(now_ms), max_udp, client), (op, now_ms)
    return cached.counters.cache_counts()


@settings(max_examples=150)
@given(content=content_items, ops=st.lists(operations, max_size=40))
def test_cached_answers_stay_identical_across_writes_deletes_sweeps_and_time(
        tmp_path_factory, content, ops):
    memory = run_history(MemoryStore(), content, ops)
    lmdb = LmdbStore(tmp_path_factory.mktemp("db"), map_size=16 * 2**20)
    try:
        assert run_history(lmdb, content, ops) == memory
    finally:
        lmdb.close()


# --- the conditions one at a time ------------------------------------------------------------

@pytest.fixture(params=["memory", "lmdb"])
def store(request, tmp_path):
    made = MemoryStore() if request.param == "memory" else LmdbStore(tmp_path / "db",
                                                                        map_size=16 * 2**20)
    yield made
    made.close()


def test_a_hit_is_the_same_answer_with_the_new_id(store):
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    cached, uncached = pair(store)
    first = cached.respond(query("a.mesh.test", qid=1), now=T0, max_udp=1232)
    second = cached.respond(query("a.mesh.test", qid=2), now=T0 + 1, max_udp=1232)
    assert second[:2] == b"\x00\x02" and second[2:] == first[2:]
    assert second == uncached.respond(query("a.mesh.test", qid=2), now=T0 + 1, max_udp=1232)
    counts = cached.counters
    assert (counts.cache_hits, counts.cache_misses, counts.cache_entries) == (1, 1, 1)
    assert counts.query_counts() == {("udp", "TXT"): 2}
    assert counts.response_counts() == {("udp", "NOERROR"): 2}
    assert counts.response_sizes()["udp"].sum == 2 * len(first)


@pytest.mark.parametrize("write, kept", [
    (lambda s: s.put("a.mesh.test", "w", expiry=T0 + 100, now=T0 + 1), ["b"]),
    (lambda s: s.put("other.mesh.test", "w", expiry=T0 + 100, now=T0 + 1), ["a", "b"]),
    (lambda s: s.delete("a.mesh.test", now=T0 + 1), ["b"]),
    (lambda s: s.sweep(T0 + 60, 10), ["a", "b"]),
    (lambda s: s.put("c.a.mesh.test", "w", expiry=T0 + 100, now=T0 + 1), ["a", "b"]),
], ids=["put-same-name", "put-elsewhere", "delete", "sweep-of-another-name", "put-below"])
def test_a_write_drops_its_names_and_the_negative_answers_only(store, write, kept):
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    store.put("b.mesh.test", "v", expiry=T0 + 100, now=T0)
    store.put("gone.mesh.test", "v", expiry=T0 + 50, now=T0)
    cached, uncached = pair(store)
    positive = {"a": query("a.mesh.test"), "b": query("B.mesh.test")}
    negative = [query("nope.mesh.test"), query("a.mesh.test", QTYPE.A),
                query("gone.mesh.test", QTYPE.A)]
    for wire in [*positive.values(), *negative]:
        cached.respond(wire, now=T0 + 1, max_udp=1232)
    built = {name: cached.cache.entries[wire[2:]] for name, wire in positive.items()}
    write(store)
    hits = cached.counters.cache_hits
    for wire in [*positive.values(), *negative]:
        assert (cached.respond(wire, now=T0 + 70, max_udp=1232)
                == uncached.respond(wire, now=T0 + 70, max_udp=1232))
    assert cached.counters.cache_hits - hits == len(kept)
    assert set(kept) <= {name for name, wire in positive.items()     # built before
                         if cached.cache.entries[wire[2:]] is built[name]}


def test_a_steady_write_stream_keeps_the_hit_rate_high(store):
    names = [f"n{i}.mesh.test" for i in range(200)]
    store.put_many([(name, "v", T0 + 1000) for name in names], now=T0)
    cached, uncached = pair(store)
    wires = [query(name) for name in names] + [query(f"x{i}.mesh.test") for i in range(20)]
    for wire in wires:
        cached.respond(wire, now=T0, max_udp=1232)
    before = cached.counters.cache_hits, cached.counters.cache_misses
    for step in range(50):          # one write to a name of its own per 44 queries
        store.put(f"w{step}.mesh.test", "v", expiry=T0 + 1000, now=T0 + step / 100)
        for wire in wires[step * 4 % 200:][:44]:
            assert (cached.respond(wire, now=T0 + step / 100, max_udp=1232)
                    == uncached.respond(wire, now=T0 + step / 100, max_udp=1232))
    hits = cached.counters.cache_hits - before[0]
    misses = cached.counters.cache_misses - before[1]
    # Only the negative answers asked after each write are rebuilt (their SOA serial
    # changed): 160 of the 2,200 queries; every positive answer stays cached.
    asked_negative = sum(len(wires[step * 4 % 200:][:44]) - len(names[step * 4 % 200:][:44])
                         for step in range(50))
    assert misses == asked_negative and hits / (hits + misses) >= 0.9, (hits, misses)


def test_the_cache_starts_afresh_when_the_store_cannot_tell_what_changed(store):
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    cached, uncached = pair(store)
    wire = query("a.mesh.test")
    cached.respond(wire, now=T0, max_udp=1232)
    store.put_many([(f"n{i}.mesh.test", "v", T0 + 100) for i in range(1500)], now=T0)
    assert store.touched_between(store.generation() - 1, store.generation()) is None
    assert cached.respond(wire, now=T0, max_udp=1232) == uncached.respond(wire, now=T0,
                                                                           max_udp=1232)
    assert cached.counters.cache_hits == 0


def test_a_positive_answer_is_kept_until_its_ttl_would_count_down(store):
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    cached, _ = pair(store)
    wire = query("a.mesh.test")
    assert ttl_of(cached.respond(wire, now=T0, max_udp=1232)) == TTL
    assert ttl_of(cached.respond(wire, now=T0 + 89.999, max_udp=1232)) == TTL
    assert cached.counters.cache_hits == 1
    # 9.5 s of life left: TTL 9, rebuilt, and kept only within that second of TTL.
    assert ttl_of(cached.respond(wire, now=T0 + 90.5, max_udp=1232)) == 9
    assert ttl_of(cached.respond(wire, now=T0 + 90.9, max_udp=1232)) == 9
    assert cached.counters.cache_hits == 2
    assert ttl_of(cached.respond(wire, now=T0 + 91.0, max_udp=1232)) == 9    # 9.000 left
    assert ttl_of(cached.respond(wire, now=T0 + 91.001, max_udp=1232)) == 8
    assert ttl_of(cached.respond(wire, now=T0 + 99.9, max_udp=1232)) == 0
    after = cached.respond(wire, now=T0 + 100, max_udp=1232)
    assert DNSRecord.parse(after).header.rcode == 3 and not DNSRecord.parse(after).rr


def test_a_value_expiring_shrinks_the_rrset_at_once(store):
    store.put("a.mesh.test", "long", expiry=T0 + 1000, now=T0)
    store.put("a.mesh.test", "short", expiry=T0 + 20, now=T0)
    cached, uncached = pair(store)
    wire = query("a.mesh.test")
    assert len(DNSRecord.parse(cached.respond(wire, now=T0, max_udp=1232)).rr) == 2
    for at in (T0 + 10, T0 + 19.9994, T0 + 19.9996, T0 + 20, T0 + 20.5):
        assert (cached.respond(wire, now=at, max_udp=1232)
                == uncached.respond(wire, now=at, max_udp=1232)), at


def test_nxdomain_is_kept_until_a_write_and_nodata_until_the_descendant_expires(store):
    store.put("b.a.mesh.test", "v", expiry=T0 + 30, now=T0)
    cached, uncached = pair(store)
    nx, ent = query("nope.mesh.test"), query("a.mesh.test")
    assert DNSRecord.parse(cached.respond(ent, now=T0, max_udp=1232)).header.rcode == 0
    cached.respond(nx, now=T0, max_udp=1232)
    for at in (T0 + 29.9, T0 + 30, T0 + 5000):
        for wire in (nx, ent):
            assert (cached.respond(wire, now=at, max_udp=1232)
                    == uncached.respond(wire, now=at, max_udp=1232)), at
    # nope: hits at T0+29.9, 30 and 5000. The ENT: a hit at 29.9; at 30 its descendant has
    # expired, so it is rebuilt (now NXDOMAIN, kept until a write): a hit at 5000.
    assert cached.counters.cache_hits == 5
    assert DNSRecord.parse(cached.respond(ent, now=T0 + 30, max_udp=1232)).header.rcode == 3


def test_a_clock_stepping_back_is_not_served_from_the_cache(store):
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0 - 50)
    cached, uncached = pair(store)
    wire = query("a.mesh.test")
    cached.respond(wire, now=T0, max_udp=1232)
    earlier = cached.respond(wire, now=T0 - 95, max_udp=1232)
    assert earlier == uncached.respond(wire, now=T0 - 95, max_udp=1232)
    assert cached.counters.cache_hits == 0


def test_case_flags_edns_and_transport_are_separate_entries(store):
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    cached, uncached = pair(store)
    variants = [(query("a.mesh.test"), 1232), (query("A.mesh.TEST"), 1232),
                (query("a.mesh.test", bits=0), 1232),
                (query("a.mesh.test", edns=EDNS0(udp_len=4096, flags="do")), 1232),
                (query("a.mesh.test"), None)]
    for wire, max_udp in variants * 2:
        assert (cached.respond(wire, now=T0, max_udp=max_udp)
                == uncached.respond(wire, now=T0, max_udp=max_udp))
    assert cached.counters.cache_entries == len(variants) - 1   # UDP and TCP share a key
    assert cached.counters.cache_hits == len(variants) - 2


def test_an_answer_cached_over_tcp_is_not_sent_over_udp_where_it_does_not_fit(store):
    store.put("a.mesh.test", "x" * 700, expiry=T0 + 100, now=T0)
    cached, uncached = pair(store)
    wire = query("a.mesh.test")
    assert len(cached.respond(wire, now=T0, max_udp=None)) > 512
    udp = cached.respond(wire, now=T0, max_udp=1232)
    assert udp == uncached.respond(wire, now=T0, max_udp=1232)
    assert DNSRecord.parse(udp).header.tc == 1
    assert cached.counters.cache_hits == 0


def test_cookie_queries_share_one_cached_answer_and_get_their_own_cookies(store):
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    cached, uncached = pair(store)
    asked = []
    for client in CLIENTS:
        for extra in EXTRAS[1:]:
            opts = client_options(extra, client)
            asked.append((query("a.mesh.test", edns=EDNS0(udp_len=1232, opts=opts)), client))
    asked.append((query("a.mesh.test", edns=EDNS0(udp_len=1232)), CLIENTS[0]))
    for now in (T0, T0 + 1):
        for wire, client in asked:
            got = cached.respond(wire, now=now, max_udp=1232, client=client)
            assert got == fresh(uncached, wire, now, 1232, client)
    assert cached.counters.cache_entries == 1
    assert cached.counters.cache_hits == 2 * len(asked) - 1
    first = DNSRecord.parse(cached.respond(asked[0][0], now=T0, max_udp=1232,
                                           client=CLIENTS[0]))
    assert [o.code for o in first.ar[0].rdata] == [10]          # the client's own cookie
    assert first.ar[0].rdata[0].data[:8] == CLIENT_COOKIE


def test_a_cookie_answer_too_big_for_udp_with_its_options_is_truncated(store):
    # Fits 512 bytes without the cookie option (28 bytes), not with it.
    store.put("a.mesh.test", "x" * 440, expiry=T0 + 100, now=T0)
    cached, uncached = pair(store)
    plain = query("a.mesh.test", edns=EDNS0(udp_len=512))
    assert len(cached.respond(plain, now=T0, max_udp=1232)) <= 512
    wire = query("a.mesh.test", edns=EDNS0(udp_len=512, opts=client_options("client", "::1")))
    got = cached.respond(wire, now=T0, max_udp=1232, client="::1")
    assert got == fresh(uncached, wire, T0, 1232, "::1")
    assert DNSRecord.parse(got).header.tc == 1


def test_shapes_the_lean_path_declines_are_never_cached(store):
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    cached, uncached = pair(store)
    for opts in ([EDNSOption(100, b"x")], [EDNSOption(10, b"c" * 9)],
                 [EDNSOption(10, b"c" * 8), EDNSOption(10, b"c" * 8)]):
        wire = query("a.mesh.test", edns=EDNS0(udp_len=1232, opts=opts))
        for _ in range(2):
            got = cached.respond(wire, now=T0, max_udp=1232, client="::1")
            assert got == fresh(uncached, wire, T0, 1232, "::1")
    assert cached.counters.cache_entries == 0 and cached.counters.cache_hits == 0


def test_through_the_udp_listener_on_a_task_clock(store):
    """The transport's clock is what the cache sees: a hit, a write, then time passing."""
    clock = task.Clock()
    clock.advance(T0)
    cached, uncached = pair(store)
    udp = DNSDatagramProtocol(cached, clock, max_udp=1232)
    udp.transport = RecordingTransport()
    store.put("a.mesh.test", "one", expiry=T0 + 100, now=T0)
    wire = query("a.mesh.test")

    def ask():
        udp.datagramReceived(wire, ("127.0.0.1", 5353))
        answer = udp.transport.sent[-1]
        assert answer == uncached.respond(wire, now=clock.seconds(), max_udp=1232)
        return DNSRecord.parse(answer)

    assert [str(rr.rdata) for rr in ask().rr] == ['"one"']
    ask()
    assert cached.counters.cache_hits == 1
    store.put("a.mesh.test", "two", expiry=T0 + 100, now=clock.seconds())
    assert [str(rr.rdata) for rr in ask().rr] == ['"one"', '"two"']
    clock.advance(95.5)
    assert ask().rr[0].ttl == 4
    clock.advance(5)
    assert ask().header.rcode == 3
    assert cached.counters.cache_hits == 1


class RecordingTransport:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append(data)


# --- bounds, eviction, metrics ------------------------------------------------------------

def fill(cache, keys, body=b"\x84\x00" + b"x" * 98):
    for key in keys:
        cache.store(key, b"id" + body, generation=1, built=T0, until_ms=10**15,
                    max_udp=1232, qtype=16)


def test_the_least_recently_used_entry_goes_first():
    counters = DnsCounters()
    cache = AnswerCache(3, 10**9, counters)
    fill(cache, [b"k1", b"k2", b"k3"])
    assert cache.lookup(b"k1", 1, T0, 1232) is not None
    fill(cache, [b"k4", b"k4"])             # full: admitted on its second miss
    assert list(cache.entries) == [b"k3", b"k1", b"k4"]
    assert counters.cache_evictions == 1 and counters.cache_entries == 3


def test_the_byte_bound_holds_and_is_accounted_exactly():
    counters = DnsCounters()
    size = 2 + 100 + ENTRY_OVERHEAD
    cache = AnswerCache(1000, 3 * size + 5, counters)
    fill(cache, [b"k1", b"k2", b"k3", b"k4", b"k4", b"k5", b"k5"])
    assert list(cache.entries) == [b"k3", b"k4", b"k5"]
    assert cache.bytes == counters.cache_bytes == 3 * size
    fill(cache, [b"k5"], body=b"\x84\x00" + b"y" * 8)                     # replacing an entry
    assert cache.bytes == 2 * size + 2 + 10 + ENTRY_OVERHEAD
    fill(cache, [b"big"], body=b"z" * (4 * size))             # larger than the bound
    assert b"big" not in cache.entries


def test_a_full_cache_admits_an_answer_on_its_second_miss():
    counters = DnsCounters()
    cache = AnswerCache(8, 10**9, counters)
    fill(cache, [b"k%d" % i for i in range(8)])          # room: stored at once
    assert len(cache.entries) == 8 and counters.cache_declined == 0
    fill(cache, [b"new"])
    assert b"new" not in cache.entries and list(cache.entries)[0] == b"k0"
    assert counters.cache_declined == 1 and counters.cache_evictions == 0
    fill(cache, [b"new"])                               # missed again soon: admitted
    assert b"new" in cache.entries and b"k0" not in cache.entries
    assert counters.cache_evictions == 1
    fill(cache, [b"k1"], body=b"\x84\x00y")                # replacing an entry: no question
    assert cache.entries[b"k1"][3] == b"\x84\x00y" and counters.cache_declined == 1


def test_the_doorkeeper_forgets_after_a_quarter_of_the_cache_of_declined_answers():
    counters = DnsCounters()
    cache = AnswerCache(8, 10**9, counters)               # a window of 2 declined answers
    fill(cache, [b"k%d" % i for i in range(8)])
    fill(cache, [b"a", b"b", b"c"])                       # the window was full at c: cleared
    fill(cache, [b"a"])
    assert b"a" not in cache.entries and counters.cache_declined == 4
    fill(cache, [b"c"])
    assert b"c" in cache.entries


def test_answers_asked_uniformly_from_ten_times_the_cache_are_mostly_declined():
    """The shape of a million names asked uniformly against 100,000 entries: most answers
    would be evicted before their next use, so most are not stored at all; the hit rate
    stays what a full cache of that size gives (about one in ten)."""
    import random
    counters = DnsCounters()
    cache = AnswerCache(1000, 10**9, counters)
    rng = random.Random(5)
    hits = 0
    for _ in range(50_000):
        key = b"name%d" % rng.randrange(10_000)
        if cache.lookup(key, 1, T0, 1232) is not None:
            hits += 1
        else:
            fill(cache, [key])
    assert 0.07 < hits / 50_000 < 0.13
    assert counters.cache_evictions < 0.2 * (50_000 - hits)
    assert len(cache.entries) == 1000


def test_a_new_generation_without_a_change_list_empties_the_cache():
    counters = DnsCounters()
    cache = AnswerCache(10, 10**9, counters)
    fill(cache, [b"k1", b"k2"])
    assert cache.lookup(b"k1", 2, T0, 1232) is None
    cache.store(b"k3", b"id\x84\x00", generation=2, built=T0, until_ms=10**15,
                max_udp=1232, qtype=16)
    assert list(cache.entries) == [b"k3"] and counters.cache_entries == 1


def test_a_cache_of_zero_entries_is_off():
    store = MemoryStore()
    assert Responder([ZONE], store, UNCACHED).cache is None
    with pytest.raises(ValueError):
        ResponderSettings(cache_entries=-1)


def test_cache_counters_are_exported_as_metrics():
    store = MemoryStore()
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    cached, _ = pair(store)
    for _ in range(3):
        cached.respond(query("a.mesh.test"), now=T0, max_udp=1232)
    registry = CollectorRegistry()
    NodeMetrics(registry).watch_dns(cached.counters)
    text = generate_latest(registry).decode()
    assert "dmfdns_dns_answer_cache_hits_total 2.0" in text
    assert "dmfdns_dns_answer_cache_misses_total 1.0" in text
    assert "dmfdns_dns_answer_cache_evictions_total 0.0" in text
    assert "dmfdns_dns_answer_cache_declined_total 0.0" in text
    assert "dmfdns_dns_answer_cache_entries 1.0" in text
    assert f"dmfdns_dns_answer_cache_bytes {float(cached.cache.bytes)}" in text


@given(st.lists(st.tuples(st.sampled_from(["udp", "tcp"]), st.integers(0, 65535),
                          st.sampled_from([0, 3, 5, 16]), st.integers(0, 70_000)),
                max_size=30))
def test_count_answer_counts_what_count_query_and_count_response_count(answers):
    one, two = DnsCounters(), DnsCounters()
    for proto, qtype, rcode, size in answers:
        one.count_answer(proto, qtype, rcode, size)
        two.count_query(proto, qtype)
        two.count_response(proto, rcode, size)
    assert one.query_counts() == two.query_counts()
    assert one.response_counts() == two.response_counts()
    assert one.response_sizes() == two.response_sizes()


def test_durations_land_in_their_buckets():
    counters = DnsCounters()
    for seconds in (0.0001, 0.00025, 0.0003, 9.0):
        counters.observe_duration("udp", seconds)
    snapshot = counters.durations()["udp"]
    assert snapshot.buckets[0] == (0.00025, 2) and snapshot.buckets[1] == (0.0005, 3)
    assert snapshot.buckets[-1] == (float("inf"), 4) and snapshot.count == 4
    assert snapshot.sum == pytest.approx(9.00065)


def test_a_store_that_cannot_tell_its_generation_is_answered_without_the_cache():
    store = MemoryStore()
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    cached, uncached = pair(store)
    wire = query("a.mesh.test")
    cached.respond(wire, now=T0, max_udp=1232)
    store.close()                      # generation() and every read now fail
    failed = cached.respond(wire, now=T0, max_udp=1232)
    assert failed == uncached.respond(wire, now=T0, max_udp=1232)
    assert DNSRecord.parse(failed).header.rcode == 2          # SERVFAIL, not the cached one
    assert cached.counters.cache_hits == 0


def test_the_byte_count_is_what_the_entries_cost_in_memory():
    """``cache_bytes`` bounds real memory: the count (key + response + ENTRY_OVERHEAD) is
    within 20 % of what tracemalloc sees the cache hold (its tables grow in powers of two),
    for answers of the million-record benchmark's size (a set per name once made the real
    cost 1.5 times the count)."""
    import os
    import tracemalloc
    cache = AnswerCache(5000, 10**9, DnsCounters())
    names = [b"\x05chunk\x20" + os.urandom(16).hex().encode() + b"\x04mesh\x04test\x00"
             for _ in range(5000)]
    tracemalloc.start()
    try:
        for name in names:
            key = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01" + name + b"\x00\x10\x00\x01"
            cache.store(key, b"id\x84\x00" + os.urandom(300), generation=1, built=T0,
                        until_ms=10**15, max_udp=1232, qtype=16)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert 0.8 < cache.bytes / held < 1.2


def dns_key(name: bytes) -> bytes:
    """A cache key (the query after its ID) for a TXT question for ``name``."""
    return b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x10\x00\x01"


def test_a_large_cache_is_sharded_and_keeps_its_bounds_and_counts():
    """A cache sized for many names is split in shards (no table large enough to hold the
    reactor while it grows); the bounds hold over all of them, the counters add up, a
    write drops every spelling of the name it touched, and a resize evicts down to the
    new bounds."""
    counters = DnsCounters()
    touched = {}
    cache = AnswerCache(100_000, 10**9, counters, lambda old, new: touched[new])
    names = [b"\x04n%03x\x04mesh\x04test" % i for i in range(3000)]
    fill(cache, [dns_key(name) for name in names for _ in range(2)])
    fill(cache, [dns_key(names[7].upper())])               # another spelling, same name
    assert len(cache._shards) == 64
    assert len(cache.entries) == counters.cache_entries == 3001
    assert cache.bytes == counters.cache_bytes
    touched[2] = {b"test.mesh.n007"}
    assert cache.lookup(dns_key(names[7]), 2, T0, 1232) is None
    assert dns_key(names[7].upper()) not in cache.entries
    assert cache.lookup(dns_key(names[8]), 2, T0, 1232) is not None
    assert counters.cache_entries == 2999
    fill_more = [dns_key(b"\x04m%03x\x04mesh\x04test" % i) for i in range(3000)]
    for key in fill_more:
        cache.store(key, b"id\x84\x00" + b"x" * 98, generation=2, built=T0,
                    until_ms=10**15, max_udp=1232, qtype=16)
    cache.resize(1280, 10**9)                            # 20 per shard
    assert len(cache.entries) == counters.cache_entries <= 1280
    assert len(cache.entries) > 1200                     # each shard kept its share
    assert cache.bytes == counters.cache_bytes
    assert counters.cache_evictions == 5999 - len(cache.entries)
    assert counters.cache_max_bytes == 10**9
    assert cache.lookup(fill_more[-1], 2, T0, 1232) is not None   # the newest stay


def test_a_small_cache_is_one_exact_lru_table():
    cache = AnswerCache(1000, 10**9, DnsCounters())
    assert len(cache._shards) == 1
    cache = AnswerCache(10**6, 2**20, DnsCounters())      # few bytes: few shards
    assert len(cache._shards) == 16


def test_a_replaced_cache_leaves_the_counters():
    """A reload builds a new cache over the same counters: the old one's entries and
    bound leave them, so the gauges show the new cache alone."""
    store = MemoryStore()
    responder = Responder([ZONE], store, CACHED)
    responder.respond(query("nope.mesh.test"), now=T0, max_udp=1232)
    assert responder.counters.cache_entries == 1
    responder.reconfigure([ZONE], ResponderSettings(answer_ttl=TTL, cache_entries=50,
                                                    cache_bytes=2**20))
    assert responder.counters.cache_entries == responder.counters.cache_bytes == 0
    assert responder.counters.cache_max_bytes == 2**20
    responder.reconfigure([ZONE], UNCACHED)
    assert responder.counters.cache_max_bytes == 0
