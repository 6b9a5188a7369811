"""RRSIGs made when a record is written and stored with its blob (dns/rrsig_store.py,
dns/write_signer.py, store/batch.py): the fast path splices them into DO answers; they
validate with dnspython against the zone's DNSKEY, mean the same as the dnslib path's
on-the-fly answer, follow values that expire, are deleted or swept, and are never served
when they do not fit the live RRset, the keys or the validity window."""

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest

from dmfdns.dns import dnssec, rrsig_store
from dmfdns.dns.responder import Responder, ResponderSettings
from dmfdns.dns.signer import SigningSettings, ZoneSigner
from dmfdns.dns.write_signer import WriteSigner
from dmfdns.dns.zone import parse_zone
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.memory_store import MemoryStore

NOW = 1_764_000_000.0
MESH = """\
$ORIGIN mesh.test.
$TTL 3600
@    SOA  ns1 hostmaster 2024010101 3600 600 604800 60
@    NS   ns1
ns1  A    192.0.2.53
_dmp 600 TXT "v=dmp1;t=static"
"""
SLOT = "slot-3.mb-abc123.mesh.test"
APEX = dns.name.from_text("mesh.test.")
ZONE = parse_zone(MESH)


class Node:
    """A store with the write-time signer hooked in, and a responder over it."""

    def __init__(self, store, algorithm=dnssec.ED25519, settings=SigningSettings()):
        self.store = store
        self.signer = ZoneSigner((b"mesh", b"test"), [dnssec.ZoneKey.generate(algorithm)],
                                 settings)
        self.responder = Responder([ZONE], store, ResponderSettings(cache_entries=0),
                                   signers={"mesh.test": self.signer})
        self.writer = WriteSigner([ZONE], lambda: self.responder.signers, 60)
        store.sign_blob = self.writer

    def swap_keys(self, signer) -> None:
        self.signer = signer
        self.responder.signers = {"mesh.test": signer}

    def ask(self, name, *, now=NOW, do=True, max_udp=None, payload=1232, dnslib=False):
        query = dns.message.make_query(name, "TXT", use_edns=0, want_dnssec=do,
                                       payload=payload)
        query.id = 0x4242
        respond = self.responder.respond_dnslib if dnslib else self.responder.respond
        return dns.message.from_wire(respond(query.to_wire(), now=now, max_udp=max_udp))

    @property
    def stored(self) -> int:
        return self.responder.counters.signed["stored"]

    @property
    def fallbacks(self) -> int:
        return self.responder.counters.signed["fallback"]


@pytest.fixture(params=[("memory", dnssec.ED25519), ("memory", dnssec.ECDSAP256SHA256),
                        ("lmdb", dnssec.ED25519)], ids=["ed25519", "p256", "lmdb"])
def node(request, tmp_path):
    kind, algorithm = request.param
    if kind == "memory":
        yield Node(MemoryStore(), algorithm)
        return
    store = LmdbStore(tmp_path / "store", map_size=64 * 2**20)
    try:
        yield Node(store, algorithm)
    finally:
        store.close()


def keyring(signer):
    dnskey = dns.rrset.from_rdata_list(APEX, 3600, [
        dns.rdata.from_wire(1, dnssec.DNSKEY, k, 0, len(k)) for k in signer.dnskey])
    return {APEX: dnskey}


def validated(response, signer, now=NOW):
    """The answer's TXT RRset after checking its RRSIG against the DNSKEY."""
    owner = response.question[0].name
    txt = response.find_rrset(response.answer, owner, 1, dns.rdatatype.TXT)
    sig = response.find_rrset(response.answer, owner, 1, dns.rdatatype.RRSIG,
                              dns.rdatatype.TXT)
    dns.dnssec.validate(txt, sig, keyring(signer), now=now)
    return txt, sig


def values(txt) -> set:
    return {b"".join(rdata.strings) for rdata in txt}


def test_a_written_record_is_stored_signed_and_validates(node):
    node.store.put(SLOT, "hello", expiry=NOW + 3600, now=NOW)
    node.store.put(SLOT, "world", expiry=NOW + 600, now=NOW)
    assert node.store.rrsig_at(b"test.mesh.mb-abc123.slot-3") is not None
    made = node.signer.signatures_made
    response = node.ask(SLOT)
    assert node.stored == 1 and node.fallbacks == 0
    assert node.signer.signatures_made == made            # nothing signed to answer
    assert response.flags & dns.flags.AA and response.ednsflags & dns.flags.DO
    txt, sig = validated(response, node.signer)
    assert values(txt) == {b"hello", b"world"} and sig[0].original_ttl == 60
    assert node.writer.records == 2 and node.writer.failures == 0


def test_the_fast_answer_means_what_the_dnslib_answer_means(node):
    node.store.put_many([(SLOT, "a", NOW + 3600), (SLOT, "b", NOW + 3600)], now=NOW)
    fast, slow = node.ask("Slot-3.MB-abc123.mesh.test"), \
        node.ask("Slot-3.MB-abc123.mesh.test", dnslib=True)
    assert node.stored == 1
    assert fast.flags == slow.flags and fast.rcode() == slow.rcode()
    assert fast.ednsflags == slow.ednsflags and fast.payload == slow.payload
    assert fast.question == slow.question and fast.authority == slow.authority == []
    assert [(r.name, r.rdtype, r.covers, r.ttl) for r in fast.answer] == \
        [(r.name, r.rdtype, r.covers, r.ttl) for r in slow.answer]
    fast_txt, fast_sig = validated(fast, node.signer)
    slow_txt, slow_sig = validated(slow, node.signer)
    assert fast_txt == slow_txt
    fields = ("type_covered", "algorithm", "labels", "original_ttl", "expiration",
              "inception", "key_tag", "signer")
    assert [getattr(fast_sig[0], f) for f in fields] == \
        [getattr(slow_sig[0], f) for f in fields]


def test_a_value_that_expires_is_answered_with_the_next_stored_step(node):
    node.store.put_many([(SLOT, "long", NOW + 3600), (SLOT, "short", NOW + 100)], now=NOW)
    later = NOW + 200                  # "short" expired; no write, no sweep yet
    txt, _ = validated(node.ask(SLOT, now=later), node.signer, now=later)
    assert values(txt) == {b"long"} and node.stored == 1
    node.store.sweep(later, 100)       # the sweep drops it: the steps stay right
    txt, _ = validated(node.ask(SLOT, now=later + 1), node.signer, now=later + 1)
    assert values(txt) == {b"long"} and node.stored == 2 and node.fallbacks == 0


def test_a_removed_value_is_signed_again_in_the_same_transaction(node):
    node.store.put_many([(SLOT, "keep", NOW + 3600), (SLOT, "drop", NOW + 3600)], now=NOW)
    node.store.delete(SLOT, "drop", now=NOW + 1)
    txt, _ = validated(node.ask(SLOT, now=NOW + 2), node.signer, now=NOW + 2)
    assert values(txt) == {b"keep"} and node.stored == 1
    node.store.delete(SLOT, now=NOW + 3)
    assert node.store.rrsig_at(b"test.mesh.mb-abc123.slot-3") is None


def test_more_expiries_than_steps_fall_back_to_signing_on_the_fly(node):
    node.store.put_many([(SLOT, f"v{i}", NOW + 100 * (i + 1)) for i in range(6)], now=NOW)
    for step in range(rrsig_store.MAX_STEPS):
        now = NOW + 100 * step + 50
        validated(node.ask(SLOT, now=now), node.signer, now=now)
    assert node.stored == rrsig_store.MAX_STEPS and node.fallbacks == 0
    now = NOW + 100 * rrsig_store.MAX_STEPS + 50
    txt, _ = validated(node.ask(SLOT, now=now), node.signer, now=now)
    assert len(txt) == 6 - rrsig_store.MAX_STEPS and node.fallbacks == 1


def test_records_signed_by_other_keys_are_not_served(node):
    node.store.put(SLOT, "hello", expiry=NOW + 3600, now=NOW)
    node.swap_keys(ZoneSigner((b"mesh", b"test"), [dnssec.ZoneKey.generate()]))
    _, sig = validated(node.ask(SLOT), node.signer)
    assert node.fallbacks == 1 and node.stored == 0
    assert sig[0].key_tag == node.signer.keys[0].tag


def test_outside_the_validity_window_the_record_is_not_served():
    settings = SigningSettings(validity=3600, refresh=600, skew=0)
    node = Node(MemoryStore(), settings=settings)
    node.store.put(SLOT, "hello", expiry=NOW + 86400, now=NOW)
    inception, expiration = node.signer.window(NOW)
    near_end = expiration - 30                    # the 60 s answer would outlive it
    validated(node.ask(SLOT, now=near_end), node.signer, now=near_end)
    assert node.fallbacks == 1 and node.stored == 0
    validated(node.ask(SLOT, now=inception + 1), node.signer, now=inception + 1)
    assert node.stored == 1


def test_names_with_static_data_and_unsigned_zones_store_nothing(node):
    node.store.put("_dmp.mesh.test", "v=dmp1;t=stored", expiry=NOW + 3600, now=NOW)
    node.store.put("x.elsewhere.test", "v", expiry=NOW + 3600, now=NOW)
    assert node.store.rrsig_at(b"test.mesh._dmp") is None
    assert node.store.rrsig_at(b"test.elsewhere.x") is None
    response = node.ask("_dmp.mesh.test")
    assert len(validated(response, node.signer)[0]) == 2 and node.stored == 0


def test_a_write_without_the_signer_drops_the_stored_record(node):
    node.store.put(SLOT, "hello", expiry=NOW + 3600, now=NOW)
    node.store.sign_blob = None           # e.g. `dmfdns records put` on a stopped node
    node.store.put(SLOT, "world", expiry=NOW + 3600, now=NOW + 1)
    assert node.store.rrsig_at(b"test.mesh.mb-abc123.slot-3") is None
    txt, _ = validated(node.ask(SLOT, now=NOW + 2), node.signer, now=NOW + 2)
    assert values(txt) == {b"hello", b"world"} and node.fallbacks == 1


def test_over_the_udp_limit_tc_then_tcp_carries_the_signed_answer(node):
    node.store.put_many([(SLOT, f"{i:02d}" + "b" * 198, NOW + 3600) for i in range(6)],
                        now=NOW)
    over_udp = node.ask(SLOT, max_udp=1232, payload=4096)
    assert over_udp.flags & dns.flags.TC and not over_udp.answer
    assert over_udp.ednsflags & dns.flags.DO
    over_tcp = node.ask(SLOT, max_udp=None)
    assert len(validated(over_tcp, node.signer)[0]) == 6
    assert node.stored == 2 and len(over_tcp.to_wire()) > 1232


def test_without_do_nothing_changes(node):
    node.store.put(SLOT, "hello", expiry=NOW + 3600, now=NOW)
    response = node.ask(SLOT, do=False)
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.TXT]
    assert node.stored == 0 and node.fallbacks == 0


def test_the_resign_scan_finds_missing_old_and_short_records(node):
    store, key = node.store, b"test.mesh.mb-abc123.slot-3"
    store.sign_blob = None
    store.put(SLOT, "hello", expiry=NOW + 86400, now=NOW)
    profile = node.writer.profile(node.signer)
    inception = node.signer.window(NOW)[0]
    [(found, blob, record)] = store.signing_scan(b"", 10)
    assert found == key and record is None
    assert rrsig_store.stale(record, profile, blob, round(NOW * 1000), inception)
    store.sign_blob = node.writer
    assert store.resign([key], NOW) == 1
    [(_, blob, record)] = store.signing_scan(b"", 10)
    assert not rrsig_store.stale(record, profile, blob, round(NOW * 1000), inception)
    next_window = node.signer.window(NOW + node.signer.settings.refresh)[0]
    assert rrsig_store.stale(record, profile, blob, round(NOW * 1000), next_window)


def test_lmdb_keeps_the_records_and_a_read_only_handle_serves_them(tmp_path):
    writer = Node(LmdbStore(tmp_path, map_size=64 * 2**20))
    writer.store.put(SLOT, "hello", expiry=NOW + 3600, now=NOW)
    writer.store.close()            # LMDB allows one handle per process (workers: test_dns_workers)
    reader = LmdbStore(tmp_path, readonly=True)
    try:
        worker = Responder([ZONE], reader, ResponderSettings(cache_entries=0),
                           signers={"mesh.test": writer.signer})
        query = dns.message.make_query(SLOT, "TXT", use_edns=0, want_dnssec=True)
        response = dns.message.from_wire(
            worker.respond(query.to_wire(), now=NOW, max_udp=1232))
        assert worker.counters.signed == {"stored": 1, "fallback": 0}
        validated(response, writer.signer)
    finally:
        reader.close()


def resigner_for(node, clock):
    from dmfdns.node_resign import Resigner, resign_interval
    resigner = Resigner(node.store, node.writer, clock, batch=3, group=2,
                        interval=resign_interval(node.responder.signers))
    resigner.startService()
    return resigner


def run_pass(resigner, clock) -> None:
    """Run the reactor's clock until the re-signer has finished one more pass (bounded)."""
    passes = resigner.passes
    for _ in range(100):
        clock.advance(0 if clock.getDelayedCalls()[0].getTime() <= clock.seconds()
                      else resigner.interval)
        if resigner.passes > passes:
            return
    raise AssertionError("the re-signer did not finish a pass")


def test_the_resigner_renews_records_before_their_window_runs_out():
    from twisted.internet import task
    settings = SigningSettings(validity=3600, refresh=600, skew=0)
    node, clock = Node(MemoryStore(), settings=settings), task.Clock()
    clock.advance(NOW)
    for index in range(7):
        node.store.put(f"n{index}.mesh.test", "v", expiry=NOW + 86400, now=NOW)
    resigner = resigner_for(node, clock)
    assert resigner.interval == 60.0             # at most a minute (refresh / 4 = 150)
    run_pass(resigner, clock)
    assert resigner.scanned == 7 and resigner.resigned == 0      # all fresh
    first_expiration = node.signer.window(NOW)[1]
    clock.advance(700)                           # the window moved on: the next pass
    assert resigner.resigned == 7 and resigner.passes == 2
    later = first_expiration - 30                # the first records no longer serve here
    _, sig = validated(node.ask("n3.mesh.test", now=later), node.signer, now=later)
    assert node.stored == 1 and node.fallbacks == 0
    assert sig[0].expiration == node.signer.window(NOW + 700)[1] > first_expiration
    resigner.stopService()


def test_the_resigner_signs_a_zone_turned_signed_and_new_keys():
    from twisted.internet import task
    node, clock = Node(MemoryStore()), task.Clock()
    clock.advance(NOW)
    node.store.sign_blob = None                  # written while nothing signed
    for index in range(5):
        node.store.put(f"n{index}.mesh.test", "v", expiry=NOW + 86400, now=NOW)
    node.store.sign_blob = node.writer
    resigner = resigner_for(node, clock)
    run_pass(resigner, clock)
    assert resigner.resigned == 5
    validated(node.ask("n0.mesh.test", now=NOW), node.signer)
    assert node.stored == 1
    node.swap_keys(ZoneSigner((b"mesh", b"test"), [dnssec.ZoneKey.generate()]))
    validated(node.ask("n1.mesh.test", now=NOW), node.signer)
    assert node.fallbacks == 1                   # old keys' records are not served
    resigner.poke()
    run_pass(resigner, clock)
    assert resigner.resigned == 10
    _, sig = validated(node.ask("n1.mesh.test", now=NOW), node.signer)
    assert node.stored == 2 and sig[0].key_tag == node.signer.keys[0].tag
    resigner.stopService()


def test_the_resigner_does_not_scan_unsigned_zones():
    from twisted.internet import task
    node, clock = Node(MemoryStore()), task.Clock()
    node.store.put("n.mesh.test", "v", expiry=NOW + 86400, now=NOW)
    node.responder.signers = {}
    resigner = resigner_for(node, clock)
    clock.advance(0)
    assert resigner.scanned == 0 and resigner.passes == 0
    resigner.stopService()


def test_with_a_ksk_and_a_zsk_only_the_zsk_signs_the_stored_rrset():
    node = Node(MemoryStore())
    ksk, zsk = dnssec.ZoneKey.generate(role=dnssec.KSK), dnssec.ZoneKey.generate(role=dnssec.ZSK)
    node.swap_keys(ZoneSigner((b"mesh", b"test"), [ksk, zsk]))
    node.store.put(SLOT, "hello", expiry=NOW + 3600, now=NOW)
    _, sig = validated(node.ask(SLOT), node.signer)
    assert [rdata.key_tag for rdata in sig] == [zsk.tag] and node.stored == 1


def test_a_new_signer_empties_the_answer_cache_of_stored_rrsigs():
    node = Node(MemoryStore())
    node.responder = Responder([ZONE], node.store, ResponderSettings(),
                               signers={"mesh.test": node.signer})
    node.store.put(SLOT, "hello", expiry=NOW + 3600, now=NOW)
    validated(node.ask(SLOT), node.signer)
    validated(node.ask(SLOT), node.signer)
    assert node.responder.counters.cache_hits == 1 and node.stored == 1
    successor = ZoneSigner((b"mesh", b"test"), [dnssec.ZoneKey.generate()])
    node.responder.set_signer("mesh.test", successor)
    node.signer = successor
    _, sig = validated(node.ask(SLOT), successor)        # not the cached old-key answer
    assert sig[0].key_tag == successor.keys[0].tag and node.fallbacks == 1


def test_an_answer_cached_with_stored_rrsigs_is_kept_no_longer_than_a_refresh_period():
    settings = SigningSettings(validity=3600, refresh=600, skew=0)
    node = Node(MemoryStore(), settings=settings)
    node.responder = Responder([ZONE], node.store, ResponderSettings(),
                               signers={"mesh.test": node.signer})
    node.store.put(SLOT, "hello", expiry=NOW + 86400, now=NOW)
    _, first = validated(node.ask(SLOT), node.signer)
    later = NOW + 700                           # the next refresh period
    node.store.resign([b"test.mesh.mb-abc123.slot-3"], later)
    _, renewed = validated(node.ask(SLOT, now=later), node.signer, now=later)
    assert renewed[0].inception == first[0].inception + 600
    assert node.stored == 2 and node.responder.counters.cache_hits == 0
