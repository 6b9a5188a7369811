"""NOTIFY sending (RFC 1996): coalescing, TSIG, retries with backoff, acknowledgements.

Mostly on a task.Clock reactor whose UDP port records what is written, with
acknowledgements built by dnspython; one test runs real sockets on IPv4 and IPv6 loopback
(NSD and Knot as secondaries are in tests/integration/test_secondaries.py).
"""

import ipaddress
import time

import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest
import pytest_twisted
from twisted.internet import protocol, task

from dmfdns.dns import tsig
from dmfdns.dns.notifier import Notifier
from dmfdns.dns.xfr import TransferPolicy
from dmfdns.dns.zone import parse_zone
from dmfdns.store.memory_store import MemoryStore

ZONE = parse_zone("""$ORIGIN mesh.test.
$TTL 3600
@ IN SOA ns1.mesh.test. hostmaster.mesh.test. 10 3600 600 604800 60
@ IN NS ns1.mesh.test.
ns1 IN A 127.0.0.1
""")
SECRET = bytes(range(32))
KEY = tsig.TsigKey("xfr-key", "hmac-sha256", SECRET)
THEIR_KEY = dns.tsig.Key("xfr-key", SECRET, "hmac-sha256")
KNOT, NSD = ("127.0.0.1", 5431), ("127.0.0.1", 5432)


class FakePort:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append((data, addr))

    def stopListening(self):
        return None


class FakeReactor(task.Clock):
    """Starts at the wall clock's time: dnspython checks TSIG times against it."""

    def __init__(self):
        super().__init__()
        self.advance(time.time())
        self.port = FakePort()

    def listenUDP(self, port, protocol, interface=""):
        return self.port


@pytest.fixture
def setup():
    reactor, store = FakeReactor(), MemoryStore(node_id="n1")
    policy = TransferPolicy(allow=(ipaddress.ip_network("127.0.0.1/32"),), keys=(KEY,),
                            notify=(KNOT, NSD), notify_key=KEY)
    notifier = Notifier(reactor, store, [(ZONE, policy)])
    notifier.startService()
    yield reactor, store, notifier
    notifier.stopService()
    store.close()


def sent_to(reactor, target):
    return [dns.message.from_wire(data, keyring=THEIR_KEY)
            for data, addr in reactor.port.sent if addr == target]


def ack(message, key=THEIR_KEY, rcode=dns.rcode.NOERROR) -> bytes:
    response = dns.message.make_response(message)
    response.set_rcode(rcode)
    if key is not THEIR_KEY:
        response.use_tsig(key)
    return response.to_wire()


def test_a_signed_notify_goes_to_every_secondary_at_start(setup):
    reactor, store, notifier = setup
    for target in (KNOT, NSD):
        (message,) = sent_to(reactor, target)
        assert message.opcode() == dns.opcode.NOTIFY and message.had_tsig
        assert message.question[0].rdtype == dns.rdatatype.SOA
        assert message.answer[0][0].serial == 10 + store.generation()


def test_changes_are_coalesced_to_one_round_per_second(setup):
    reactor, store, notifier = setup
    start = reactor.seconds()
    for index in range(20):
        store.put(f"n{index}.mesh.test", "v", expiry=start + 100, now=start)
        reactor.advance(0.02)
    assert notifier.counters.rounds == 1                  # the start-up round only
    reactor.advance(1.0)
    assert notifier.counters.rounds == 2
    latest = sent_to(reactor, KNOT)[-1]
    assert latest.answer[0][0].serial == 10 + store.generation()
    reactor.advance(5)
    assert notifier.counters.rounds == 2                  # nothing changed since


def test_unanswered_notify_is_retried_with_backoff_until_acknowledged(setup):
    reactor, store, notifier = setup
    start = reactor.seconds()
    times = []
    for _ in range(80):
        before = len(sent_to(reactor, KNOT))
        reactor.advance(0.2)
        if len(sent_to(reactor, KNOT)) > before:
            times.append(reactor.seconds() - start)
    gaps = [round(b - a) for a, b in zip(times, times[1:])]
    assert gaps[:3] == [2, 4, 8]                          # 1 s, then doubling
    assert notifier.counters.retries >= 4
    last = sent_to(reactor, KNOT)[-1]
    notifier.answer(ack(last), KNOT)
    assert notifier.counters.acknowledged == 1
    count = len(sent_to(reactor, KNOT))
    reactor.advance(120)
    assert len(sent_to(reactor, KNOT)) == count           # acknowledged: no more
    assert len(sent_to(reactor, NSD)) > 4                 # still unanswered


def test_a_bad_acknowledgement_does_not_count(setup):
    reactor, store, notifier = setup
    first = sent_to(reactor, KNOT)[0]
    wrong = dns.tsig.Key("xfr-key", b"z" * 32, "hmac-sha256")
    notifier.answer(ack(first, key=wrong), KNOT)                      # bad MAC
    notifier.answer(ack(first, rcode=dns.rcode.REFUSED), KNOT)       # an error rcode
    notifier.answer(ack(first), NSD)                                 # the wrong sender
    notifier.answer(b"\x00", KNOT)                                   # noise
    assert notifier.counters.acknowledged == 0
    assert notifier.counters.failed == 2
    notifier.answer(ack(first), KNOT)
    assert notifier.counters.acknowledged == 1


def test_a_newer_round_replaces_the_pending_notify(setup):
    reactor, store, notifier = setup
    start = reactor.seconds()
    old = sent_to(reactor, KNOT)[0]
    store.put("x.mesh.test", "v", expiry=start + 100, now=start)
    reactor.advance(1.2)
    newest = sent_to(reactor, KNOT)[-1]
    assert newest.answer[0][0].serial > old.answer[0][0].serial
    notifier.answer(ack(old), KNOT)                      # too late: its id is gone
    assert notifier.counters.acknowledged == 0
    notifier.answer(ack(newest), KNOT)
    assert notifier.counters.acknowledged == 1


class _Secondary(protocol.DatagramProtocol):
    """A secondary on a real socket that acknowledges every NOTIFY, signed."""

    def __init__(self):
        self.received = []

    def datagramReceived(self, data, addr):
        message = dns.message.from_wire(data, keyring=THEIR_KEY)
        self.received.append(message)
        self.transport.write(ack(message), addr)


@pytest_twisted.inlineCallbacks
def test_real_sockets_ipv4_and_ipv6_secondaries_acknowledge():
    from twisted.internet import reactor
    store = MemoryStore(node_id="n1")
    secondaries = [_Secondary(), _Secondary()]
    ports = [reactor.listenUDP(0, secondaries[0], interface="127.0.0.1"),
             reactor.listenUDP(0, secondaries[1], interface="::1")]
    targets = (("127.0.0.1", ports[0].getHost().port), ("::1", ports[1].getHost().port))
    policy = TransferPolicy(notify=targets, notify_key=KEY)
    notifier = Notifier(reactor, store, [(ZONE, policy)], poll=0.05)
    notifier.startService()
    try:
        for _ in range(100):
            if notifier.counters.acknowledged == 2:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        assert notifier.counters.acknowledged == 2 and not notifier.pending
        assert all(len(s.received) == 1 for s in secondaries)
    finally:
        yield notifier.stopService()
        for port in ports:
            yield port.stopListening()
        store.close()
