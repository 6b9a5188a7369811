"""Zone transfer answers (``dmfdns.dns.xfr``) over a MemoryStore, read back by dnspython.

Unit level: no sockets. The messages a ``Transfer`` hands out are parsed by dnspython with
its TSIG chain validation, so what is checked is what a secondary would accept. Real TCP
streaming and real secondaries are in tests/integration.
"""

import ipaddress
import struct
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest
from hypothesis import given, settings, strategies as st

from dmfdns.dns import tsig, xfr
from dmfdns.dns.zone import parse_zone
from dmfdns.store.memory_store import MemoryStore

T0 = 1_700_000_000.0
ZONE_TEXT = """$ORIGIN mesh.test.
$TTL 3600
@       IN SOA  ns1.mesh.test. hostmaster.mesh.test. 100 3600 600 604800 60
@       IN NS   ns1.mesh.test.
ns1     IN A    127.0.0.1
fixed   IN TXT  "static"
"""
INNER_TEXT = """$ORIGIN inner.mesh.test.
$TTL 3600
@       IN SOA  ns1.mesh.test. hostmaster.mesh.test. 7 3600 600 604800 60
@       IN NS   ns1.mesh.test.
"""
SECRET = bytes(range(32))
KEY = tsig.TsigKey("xfr-key", "hmac-sha256", SECRET)
ORIGIN = dns.name.from_text("mesh.test.")


def their_key(secret=SECRET, name="xfr-key"):
    return dns.tsig.Key(name, secret, "hmac-sha256")


@pytest.fixture
def store():
    store = MemoryStore(node_id="n1", journal_limit=10_000)
    for index in range(50):
        store.put(f"n{index}.mesh.test", f"value {index}", expiry=T0 + 3600, now=T0)
    store.put("deep.inner.mesh.test", "other zone", expiry=T0 + 3600, now=T0)
    yield store
    store.close()


def transfers_for(store, *, keys=(KEY,), allow=("127.0.0.0/8",), target=512):
    zones = [parse_zone(ZONE_TEXT), parse_zone(INNER_TEXT)]
    policy = xfr.TransferPolicy(allow=tuple(ipaddress.ip_network(n) for n in allow),
                                keys=tuple(keys))
    return xfr.Transfers(zones, {"mesh.test": policy}, store, ttl=60, target=target)


def request(qtype="AXFR", *, key=their_key(), name="mesh.test.", serial=None,
            rdclass="IN", edns=False):
    query = dns.message.make_query(name, qtype, rdclass=rdclass, use_edns=edns)
    if serial is not None:
        soa = dns.rrset.from_text(name, 0, "IN", "SOA",
                                  f"ns1.mesh.test. hostmaster.mesh.test. {serial} 1 1 1 1")
        query.authority.append(soa)
    if key is not None:
        query.use_tsig(key)
    return query


def run(transfers, query, *, client="127.0.0.1", tcp=True, now=None):
    """Every message of the answer to ``query`` (PENDING steps skipped)."""
    now = time.time() if now is None else now
    transfer = transfers.start(query.to_wire(), now=now, client=client, tcp=tcp)
    assert transfer is not None
    messages = []
    while True:
        message = transfer.next_message(now)
        if message is None:
            return messages
        if message != xfr.PENDING:
            messages.append(message)


def read_stream(messages, query, key=their_key()):
    """dnspython's view of a multi-message answer: TSIG chain checked, records in order."""
    ctx, records = None, []
    for wire in messages:
        parsed = dns.message.from_wire(wire, keyring=key, request_mac=query.mac, xfr=True,
                                       origin=ORIGIN, tsig_ctx=ctx, multi=True,
                                       one_rr_per_rrset=True)
        ctx = parsed.tsig_ctx
        assert parsed.id == query.id and parsed.rcode() == dns.rcode.NOERROR
        assert parsed.flags & dns.flags.AA
        records.extend(parsed.answer)
    return records


def txt_pairs(records):
    return {(rr.name.derelativize(ORIGIN).to_text(), b"".join(rr[0].strings).decode())
            for rr in records if rr.rdtype == dns.rdatatype.TXT}


def test_axfr_is_soa_zone_file_store_values_soa_signed_over_many_messages(store):
    transfers = transfers_for(store)
    query = request()
    messages = run(transfers, query)
    assert len(messages) >= 3                                # 512-byte messages
    records = read_stream(messages, query)
    serial = 100 + store.generation()
    assert records[0].rdtype == records[-1].rdtype == dns.rdatatype.SOA
    assert records[0][0].serial == records[-1][0].serial == serial
    assert sum(rr.rdtype == dns.rdatatype.SOA for rr in records) == 2
    pairs = txt_pairs(records)
    assert {(f"n{i}.mesh.test.", f"value {i}") for i in range(50)} <= pairs
    assert ("fixed.mesh.test.", "static") in pairs
    assert not any("inner" in name for name, _ in pairs)    # a zone of its own
    assert any(rr.rdtype == dns.rdatatype.NS for rr in records)
    assert transfers.counters.requests == {("axfr", "full"): 1}


def test_a_snapshot_keeps_the_transfer_on_one_generation(store):
    transfers = transfers_for(store)
    query = request()
    transfer = transfers.start(query.to_wire(), now=time.time(), client="127.0.0.1",
                               tcp=True)
    messages = []
    while not messages:
        message = transfer.next_message(time.time())
        if message != xfr.PENDING:
            messages.append(message)
    store.put("late.mesh.test", "after the start", expiry=T0 + 3600, now=T0 + 1)
    store.delete("n49.mesh.test", now=T0 + 1)
    while (message := transfer.next_message(time.time())) is not None:
        if message != xfr.PENDING:
            messages.append(message)
    records = read_stream(messages, query)
    pairs = txt_pairs(records)
    assert ("late.mesh.test.", "after the start") not in pairs
    assert ("n49.mesh.test.", "value 49") in pairs
    assert records[-1][0].serial == 100 + store.generation() - 2


def ixfr_records(store, transfers, serial):
    query = request("IXFR", serial=serial)
    return read_stream(run(transfers, query), query)


def test_ixfr_sends_the_condensed_difference(store):
    transfers = transfers_for(store)
    old = 100 + store.generation()
    store.put("added.mesh.test", "new", expiry=T0 + 3600, now=T0 + 1)
    store.delete("n3.mesh.test", "value 3", now=T0 + 2)
    store.put("flash.mesh.test", "gone again", expiry=T0 + 3600, now=T0 + 3)
    store.delete("flash.mesh.test", now=T0 + 4)
    records = ixfr_records(store, transfers, old)
    new = 100 + store.generation()
    soas = [index for index, rr in enumerate(records) if rr.rdtype == dns.rdatatype.SOA]
    assert [records[i][0].serial for i in soas] == [new, old, new, new]
    deleted = txt_pairs(records[soas[1]:soas[2]])
    added = txt_pairs(records[soas[2]:soas[3]])
    assert deleted == {("n3.mesh.test.", "value 3")}
    assert added == {("added.mesh.test.", "new")}
    assert transfers.counters.requests == {("ixfr", "incremental"): 1}


def test_ixfr_falls_back_to_the_full_zone_when_the_journal_does_not_reach(store):
    transfers = transfers_for(store)
    records = ixfr_records(store, transfers, 50)            # before any journal entry
    assert records[0].rdtype == dns.rdatatype.SOA and records[1].rdtype != dns.rdatatype.SOA
    assert len(txt_pairs(records)) >= 50
    assert transfers.counters.requests == {("ixfr", "full"): 1}


@pytest.mark.parametrize("offset", [0, 1, 2**31 - 1])
def test_ixfr_for_a_current_or_newer_serial_is_one_soa(store, offset):
    transfers = transfers_for(store)
    serial = (100 + store.generation() + offset) % 2**32
    records = ixfr_records(store, transfers, serial)
    assert [rr.rdtype for rr in records] == [dns.rdatatype.SOA]
    assert records[0][0].serial == 100 + store.generation()


def test_ixfr_over_udp_is_the_current_soa_and_axfr_over_udp_is_refused(store):
    transfers = transfers_for(store)
    query = request("IXFR", serial=100)
    (message,) = run(transfers, query, tcp=False)
    parsed = dns.message.from_wire(message, keyring=their_key(), request_mac=query.mac)
    assert [rr.rdtype for rr in parsed.answer] == [dns.rdatatype.SOA]
    query = request("AXFR")
    (message,) = run(transfers, query, tcp=False)
    parsed = dns.message.from_wire(message, keyring=their_key(), request_mac=query.mac)
    assert parsed.rcode() == dns.rcode.REFUSED


def single(transfers, query, **kwargs):
    (message,) = run(transfers, query, **kwargs)
    return message


def test_outside_the_acl_is_refused_with_ede_and_counted(store):
    transfers = transfers_for(store)
    query = request(edns=True)
    message = single(transfers, query, client="192.0.2.1")
    parsed = dns.message.from_wire(message, keyring=their_key(), request_mac=query.mac)
    assert parsed.rcode() == dns.rcode.REFUSED and not parsed.answer
    assert parsed.extended_errors()[0].code == 18               # Prohibited
    assert transfers.counters.requests == {("axfr", "refused"): 1}


def test_an_unsigned_request_is_refused_when_the_zone_has_a_key(store):
    message = single(transfers_for(store), request(key=None))
    assert dns.message.from_wire(message).rcode() == dns.rcode.REFUSED


def test_without_keys_the_acl_alone_decides(store):
    transfers = transfers_for(store, keys=())
    query = request(key=None)
    records = read_stream(run(transfers, query), query, key=None)
    assert len(txt_pairs(records)) >= 50
    message = single(transfers, request(key=None), client="10.1.1.1")
    assert dns.message.from_wire(message).rcode() == dns.rcode.REFUSED


def test_no_allow_list_means_no_transfers(store):
    transfers = transfers_for(store, allow=())
    query = request()
    message = single(transfers, query)
    parsed = dns.message.from_wire(message, keyring=their_key(), request_mac=query.mac)
    assert parsed.rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("key, error", [
    (their_key(secret=b"y" * 32), dns.tsig.PeerBadSignature),
    (their_key(name="nobody"), dns.tsig.PeerBadKey),
])
def test_a_wrong_key_is_notauth_with_the_tsig_error(store, key, error):
    query = request(key=key)
    message = single(transfers_for(store), query)
    with pytest.raises(error):
        dns.message.from_wire(message, keyring=key, request_mac=query.mac)
    assert dns.message.from_wire(message, keyring=False).rcode() == dns.rcode.NOTAUTH


def test_a_stale_signature_is_badtime(store):
    query = request()
    message = single(transfers_for(store), query, now=time.time() + 3600)
    with pytest.raises(dns.tsig.PeerBadTime):
        dns.message.from_wire(message, keyring=their_key(), request_mac=query.mac)


@pytest.mark.parametrize("name, rcode", [
    ("n1.mesh.test.", dns.rcode.NOTAUTH),          # not a zone apex
    ("example.org.", dns.rcode.NOTAUTH),           # not our zone
    ("inner.mesh.test.", dns.rcode.REFUSED),       # ours, but no transfer policy
])
def test_names_that_are_not_a_transferable_apex(store, name, rcode):
    query = request(name=name, key=None)
    assert dns.message.from_wire(single(transfers_for(store), query)).rcode() == rcode


def test_a_wrong_class_is_refused(store):
    query = request(rdclass="CH")
    message = single(transfers_for(store), query)
    parsed = dns.message.from_wire(message, keyring=their_key(), request_mac=query.mac)
    assert parsed.rcode() == dns.rcode.REFUSED


def test_ixfr_without_a_soa_is_formerr(store):
    query = request("IXFR")
    message = single(transfers_for(store), query)
    parsed = dns.message.from_wire(message, keyring=their_key(), request_mac=query.mac)
    assert parsed.rcode() == dns.rcode.FORMERR


def test_a_truncated_tsig_is_formerr_without_tsig(store):
    wire = request().to_wire()
    cut = wire[:-7]
    transfer = transfers_for(store).start(cut, now=time.time(), client="127.0.0.1",
                                          tcp=True)
    message = transfer.next_message(time.time())
    parsed = dns.message.from_wire(message)
    assert parsed.rcode() == dns.rcode.FORMERR and not parsed.had_tsig


def test_responses_and_runts_get_nothing(store):
    transfers = transfers_for(store)
    wire = bytearray(request().to_wire())
    wire[2] |= 0x80
    assert transfers.start(bytes(wire), now=T0, client="127.0.0.1", tcp=True) is None
    assert transfers.start(b"\x00\x01", now=T0, client="127.0.0.1", tcp=True) is None


def test_is_transfer_looks_only_at_the_question():
    assert xfr.is_transfer(request().to_wire())
    assert xfr.is_transfer(request("IXFR", serial=1).to_wire())
    assert not xfr.is_transfer(dns.message.make_query("mesh.test.", "SOA").to_wire())
    assert not xfr.is_transfer(b"\x00" * 5)


@settings(max_examples=300, deadline=None)
@given(qtype=st.sampled_from(["AXFR", "IXFR"]), serial=st.integers(0, 2**32 - 1),
       rdclass=st.sampled_from(["IN", "CH", "HS", "ANY"]), cut=st.integers(0, 120),
       flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=3),
       tcp=st.booleans(), signed=st.booleans())
def test_fuzzed_requests_are_answered_cleanly(qtype, serial, rdclass, cut, flips, tcp,
                                              signed):
    store = MemoryStore(node_id="n1", journal_limit=100)
    store.put("a.mesh.test", "v", expiry=T0 + 100, now=T0)
    transfers = transfers_for(store)
    query = request(qtype, serial=serial if qtype == "IXFR" else None, rdclass=rdclass,
                    key=their_key() if signed else None)
    wire = bytearray(query.to_wire())
    wire = wire[:max(0, len(wire) - cut)]
    for where, bits in flips:
        if where < len(wire):
            wire[where] ^= bits
    transfer = transfers.start(bytes(wire), now=time.time(), client="127.0.0.1", tcp=tcp)
    if transfer is None:
        assert len(wire) < 12 or wire[2] & 0x80
        return
    count = 0
    while (message := transfer.next_message(time.time())) is not None:
        if message == xfr.PENDING:
            continue
        count += 1
        ident, flags = struct.unpack_from(">HH", message)
        assert ident == struct.unpack_from(">H", wire)[0] and flags & 0x8000
        assert flags & 0xF in (0, 1, 5, 9)
        dns.message.from_wire(message, keyring=False)    # well formed
    assert count >= 1
