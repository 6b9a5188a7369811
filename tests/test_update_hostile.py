"""The UPDATE handler (``dmfdns.dns.update_handler``) over a real LmdbStore: the claim
rules, and hostile input: 10,000 random and mutated UPDATE messages and claim floods from
fresh mailbox hashes. No exception escapes, every answer is a well-formed response, the
global claim budget holds, and an honest signed writer still writes afterwards."""

import hashlib
import os
import random
import struct
import time

import dns.message
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest
from twisted.internet import task

from dmfdns.dns import tsig
from dmfdns.dns.update_handler import UpdateHandler, UpdateSettings
from dmfdns.dns.zone import parse_zone
from dmfdns.proto import authority, claim, owners
from dmfdns.proto.signing import Signer
from dmfdns.store.credentials import Credentials
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.writes import WriteService

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# dnspython signs with the wall clock, so the node's clock starts at the wall clock; the
# fixture takes it afresh for every test, since a long run outlives the TSIG fudge.
NOW = int(time.time())
ZONE = "mesh.test"
SENDER = Signer(hashlib.sha256(b"hostile/sender").digest())
KEY_NAME = "alice-00000000-000000.mesh.test"


@pytest.fixture
def world(tmp_path):
    global NOW
    NOW = int(time.time())
    store = LmdbStore(tmp_path / "db", map_size=2**28, node_id="n1")
    clock = task.Clock()
    clock.advance(NOW)
    credentials = Credentials(store)
    record = credentials.mint_tsig(KEY_NAME, "alice@mesh.test", "00" * 32,
                                   suffixes=authority.minted_suffixes(ZONE, "alice", "00" * 32,
                                                                      None),
                                   now=NOW, ttl=86400)
    zone = parse_zone(open(os.path.join(ROOT, "zones", "mesh.test.zone")).read())
    settings = UpdateSettings(claim_rate=0.5, claim_burst=3, claim_budget_rate=1.0,
                              claim_budget_burst=50, claim_max_ttl=3600)
    handler = UpdateHandler(zones=[zone], writes=WriteService(store, zones=[ZONE]),
                            credentials=credentials, clock=clock, settings=settings)
    handler.store, handler.clock = store, clock
    handler.keyring = dns.tsigkeyring.from_text(
        {KEY_NAME + ".": __import__("base64").b64encode(bytes.fromhex(record.secret_hex))
         .decode()})
    yield handler
    store.close()


def a_claim(mailbox_seed: int, slot: int = 0, exp_in: int = 600) -> tuple[str, str]:
    """(owner, value) of a signed claim into the mailbox of a fresh recipient."""
    recipient_id = hashlib.sha256(b"recipient %d" % mailbox_seed).digest()
    value = claim.sign(bytes(16), SENDER.public_key, "mesh.test", slot, NOW, NOW + exp_in,
                       SENDER)
    return owners.claim(slot, recipient_id, ZONE) + ".", value


def unsigned(*adds, ttl=300) -> bytes:
    update = dns.update.UpdateMessage(ZONE)
    for owner, value in adds:
        update.add(owner, ttl, "TXT", f'"{value}"')
    return update.to_wire()


def signed_wire(handler, owner, value) -> tuple[bytes, bytes]:
    update = dns.update.UpdateMessage(ZONE, keyring=handler.keyring, keyname=KEY_NAME + ".")
    update.add(owner, 300, "TXT", f'"{value}"')
    return update.to_wire(), update


def rcode_of(response: bytes) -> int:
    return response[3] & 0xF


def answer(handler, wire) -> bytes:
    return handler(wire, now=handler.clock.seconds())


# --- claims ---------------------------------------------------------------------------------

def test_an_unsigned_claim_is_stored_with_its_ttl_capped(world):
    owner, value = a_claim(1)
    assert rcode_of(answer(world, unsigned((owner, value), ttl=86400))) == dns.rcode.NOERROR
    [stored] = world.store.get(owner.rstrip("."), NOW)
    assert stored.value == value and stored.expiry == NOW + 3600      # claim_max_ttl
    assert world.counters.claims_accepted == 1


@pytest.mark.parametrize("build", [
    lambda: unsigned((a_claim(2)[0], "v=dmp1;t=claim;d=AAAA")),            # does not verify
    lambda: unsigned((a_claim(2, exp_in=7200))),                            # outlives max TTL
    lambda: unsigned((f"claim-0.mb-0123456789ab.sub.{ZONE}.", a_claim(2)[1])),  # too deep
    lambda: unsigned((f"slot-0.mb-0123456789ab.{ZONE}.", a_claim(2)[1])),   # not a claim
    lambda: unsigned((a_claim(2)[0], a_claim(3, slot=1)[1])),               # other slot
])
def test_bad_claims_are_refused_and_change_nothing(world, build):
    before = (world.store.generation(), world.store.stats().values)
    assert rcode_of(answer(world, build())) == dns.rcode.REFUSED
    assert (world.store.generation(), world.store.stats().values) == before


def test_an_unsigned_delete_is_refused(world):
    update = dns.update.UpdateMessage(ZONE)
    update.delete(a_claim(4)[0])
    assert rcode_of(answer(world, update.to_wire())) == dns.rcode.REFUSED


def test_one_mailbox_has_its_own_bucket(world):
    codes = [rcode_of(answer(world, unsigned(a_claim(5, slot=n % 10)))) for n in range(5)]
    assert codes == [0, 0, 0, dns.rcode.SERVFAIL, dns.rcode.SERVFAIL]
    assert world.counters.claims_throttled == {"mailbox": 2}
    assert rcode_of(answer(world, unsigned(a_claim(6)))) == dns.rcode.NOERROR


def test_a_flood_from_fresh_mailboxes_stays_within_the_global_budget(world):
    codes = [rcode_of(answer(world, unsigned(a_claim(1000 + n)))) for n in range(500)]
    assert codes.count(dns.rcode.NOERROR) == 50           # the budget's burst, no more
    assert codes.count(dns.rcode.SERVFAIL) == 450
    assert world.store.stats().values == 50
    world.clock.advance(10)                               # 1 claim per second refills
    codes = [rcode_of(answer(world, unsigned(a_claim(5000 + n)))) for n in range(100)]
    assert codes.count(dns.rcode.NOERROR) == 10
    # A signed writer does not draw on the claim budget.
    wire, update = signed_wire(world, owners.prekeys("alice", ZONE) + ".", _prekey())
    response = dns.message.from_wire(answer(world, wire), keyring=world.keyring,
                                     request_mac=update.mac)
    assert response.rcode() == dns.rcode.NOERROR


def _prekey() -> str:
    from dmfdns.proto import prekey
    return prekey.sign(1, bytes(range(32)), NOW + 86400,
                       Signer(hashlib.sha256(b"hostile/alice").digest()))


# --- random and mutated messages ------------------------------------------------------------

def _seeds(handler) -> list[bytes]:
    wires = [unsigned(a_claim(9000)), unsigned(a_claim(9001), a_claim(9002, slot=3))]
    wires.append(signed_wire(handler, owners.prekeys("alice", ZONE) + ".", _prekey())[0])
    update = dns.update.UpdateMessage(ZONE)
    update.present(f"a.{ZONE}.")
    update.absent(f"b.{ZONE}.", "TXT")
    update.delete(f"c.{ZONE}.", "TXT", '"x"')
    update.delete(f"d.{ZONE}.")
    wires.append(update.to_wire())
    return wires


def _mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if choice < 0.5 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.7:
            del data[rng.randrange(len(data) + 1):]
        elif choice < 0.85:
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        else:
            at = rng.randrange(4, 12) if len(data) >= 12 else 0   # the section counts
            data[at:at + 2] = struct.pack(">H", rng.choice([0, 1, 2, 255, 65535]))
    return bytes(data)


def _random_update(rng: random.Random) -> bytes:
    header = struct.pack(">HHHHHH", rng.randrange(65536), 5 << 11, *(rng.randrange(4)
                                                                       for _ in range(4)))
    return header + bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))


def test_ten_thousand_random_and_mutated_updates(world):
    rng = random.Random(20261203)
    seeds = _seeds(world)
    before_keys = world.store.stats().values
    answered, codes = 0, {}
    for n in range(10_000):
        wire = _random_update(rng) if n % 3 == 0 else _mutate(rng, rng.choice(seeds))
        response = answer(world, wire)             # any exception fails the test
        if response is None:
            assert len(wire) < 12                  # only runts go unanswered
            continue
        answered += 1
        codes[rcode_of(response)] = codes.get(rcode_of(response), 0) + 1
        assert response[:2] == wire[:2]            # the ID echoed
        assert response[2] & 0x80 and (response[2] >> 3) & 0xF == 5   # QR, opcode UPDATE
        record = tsig.find(response)
        if record is not None:
            assert record.error in (0, tsig.BADKEY, tsig.BADSIG, tsig.BADTIME, tsig.BADTRUNC)
    assert answered > 9_000
    # The mutations reach past the header: parse errors, TSIG errors, policy refusals and
    # some updates that still apply.
    assert {dns.rcode.FORMERR, dns.rcode.NOTAUTH, dns.rcode.REFUSED} <= set(codes)
    assert codes.get(dns.rcode.NOERROR, 0) > 0
    # The flood stayed within the claim budget (burst 50, 1/s, the clock did not move).
    assert world.store.stats().values - before_keys <= 50 + 3
    # An honest writer still writes.
    world.clock.advance(1)
    wire, update = signed_wire(world, owners.prekeys("alice", ZONE) + ".", _prekey())
    response = dns.message.from_wire(answer(world, wire), keyring=world.keyring,
                                     request_mac=update.mac)
    assert response.rcode() == dns.rcode.NOERROR
