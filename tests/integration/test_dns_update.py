"""DNS UPDATE (RFC 2136) with TSIG (RFC 8945) against ``node/public/`` as a real
``dmfdns serve`` process, driven by dnspython (>= 2.9, which rejects TSIG errors that do not
carry the TSIG RR): signed adds and deletes over UDP and TCP, prerequisites met and failed,
wrong key / wrong secret / stale time answered with the error in a TSIG RR, replays refused,
and after every refusal the record count and the SOA serial unchanged."""

import hashlib
import json
import socket

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from dmfdns.proto import identity, owners
from dmfdns.proto.signing import Signer
from node_support import http_call
from public_node import PublicNode, register

ZONE = "mesh.test"
ALICE = Signer(hashlib.sha256(b"update/alice").digest())
BOB = Signer(hashlib.sha256(b"update/bob").digest())
TIMEOUT = 5


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    public = PublicNode(tmp_path_factory.mktemp("update")).start()
    reply = register(public.http_port, ALICE, "alice@mesh.test", tsig=True)
    public.key_name = reply["tsig_key_name"]
    public.keyring = dns.tsigkeyring.from_text({reply["tsig_key_name"]: _b64(
        reply["tsig_secret_hex"])})
    public.secret_hex = reply["tsig_secret_hex"]
    yield public
    public.stop()


def _b64(hex_secret: str) -> str:
    import base64
    return base64.b64encode(bytes.fromhex(hex_secret)).decode()


def soa_serial(node) -> int:
    reply = dns.query.udp(dns.message.make_query(ZONE, "SOA"), "127.0.0.1", port=node.dns_port,
                          timeout=TIMEOUT)
    return reply.answer[0][0].serial


def record_count(node) -> int:
    return json.loads(http_call(node.http_port, "GET", "/stats")[2])["records"]


def snapshot(node):
    return soa_serial(node), record_count(node)


def txt(node, name) -> list[str]:
    reply = dns.query.tcp(dns.message.make_query(name, "TXT"), "127.0.0.1",
                          port=node.dns_port, timeout=TIMEOUT)
    return sorted(b"".join(r.strings).decode() for rrset in reply.answer for r in rrset)


def signed(node, keyring=None, key_name=None):
    return dns.update.UpdateMessage(ZONE, keyring=keyring or node.keyring,
                                    keyname=key_name or node.key_name,
                                    keyalgorithm=dns.tsig.HMAC_SHA256)


def send(node, message, tcp=False):
    query = dns.query.tcp if tcp else dns.query.udp
    return query(message, "127.0.0.1", port=node.dns_port, timeout=TIMEOUT)


def chunk_name(n: int) -> str:
    return f"chunk-{n:04d}-0123456789ab.{ZONE}."      # absolute: dnspython takes names
                                                       # without a dot as relative


def a_chunk(text: str) -> str:
    """A chunk record (structurally valid: its checksum holds) carrying ``text``."""
    from dmfdns.proto import chunk
    block = text.encode()[:chunk.BLOCK_LEN].ljust(chunk.BLOCK_LEN, b".")
    return chunk.encode(chunk.make_blob(block, bytes(chunk.PARITY_LEN)))


def a_prekey(prekey_id: int) -> str:
    import time
    from dmfdns.proto import prekey
    return prekey.sign(prekey_id, bytes(range(32)), int(time.time()) + 86400, ALICE)


# --- signed writes ------------------------------------------------------------------------------

def alice_identity() -> str:
    return identity.sign("alice", bytes(range(32)), ALICE.public_key, 1_700_000_000, ALICE)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_signed_add_is_stored_signed_and_bumps_the_serial(node, tcp):
    name = owners.identity_hashed("alice", ZONE) + "."
    before = soa_serial(node)
    update = signed(node)
    update.add(name, 300, "TXT", _quoted(alice_identity()))
    reply = send(node, update, tcp)          # dnspython verifies the response's TSIG
    assert reply.rcode() == dns.rcode.NOERROR and reply.had_tsig
    assert txt(node, name) == [alice_identity()]
    assert soa_serial(node) > before


def _quoted(value: str) -> str:
    # One character-string per 255 bytes (dnspython takes each quoted part as one).
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


def test_an_update_over_512_bytes_is_taken_over_udp(node):
    update = signed(node)
    values = [a_chunk(f"part {n} " + "x" * 200) for n in range(3)]
    for n, value in enumerate(values):
        update.add(chunk_name(100 + n), 300, "TXT", _quoted(value))
    assert len(update.to_wire()) > 512
    assert send(node, update).rcode() == dns.rcode.NOERROR
    assert txt(node, chunk_name(101)) == [values[1]]


def test_deletes_value_rrset_and_name(node):
    name = owners.prekeys("alice", ZONE) + "."
    values = [a_prekey(n) for n in (1, 2, 3)]
    update = signed(node)
    for value in values:
        update.add(name, 300, "TXT", _quoted(value))
    assert send(node, update).rcode() == dns.rcode.NOERROR
    assert txt(node, name) == sorted(values)
    update = signed(node)
    update.delete(name, "TXT", _quoted(values[0]))          # class NONE: one value
    assert send(node, update, tcp=True).rcode() == dns.rcode.NOERROR
    assert txt(node, name) == sorted(values[1:])
    update = signed(node)
    update.delete(name, "TXT")                              # class ANY, TXT: the RRset
    assert send(node, update).rcode() == dns.rcode.NOERROR
    assert txt(node, name) == []
    update = signed(node)
    update.add(name, 300, "TXT", _quoted(values[0]))
    assert send(node, update).rcode() == dns.rcode.NOERROR
    update = signed(node)
    update.delete(name)                                     # ANY ANY: everything at the name
    assert send(node, update).rcode() == dns.rcode.NOERROR
    assert txt(node, name) == []


def test_prerequisites_met_apply_and_failed_change_nothing(node):
    present, absent = chunk_name(200), chunk_name(201)
    value = a_chunk("prerequisite")
    update = signed(node)
    update.add(present, 300, "TXT", _quoted(value))
    assert send(node, update).rcode() == dns.rcode.NOERROR
    update = signed(node)
    update.present(present)                                 # name in use
    update.present(present, "TXT", _quoted(value))          # the RRset, value dependent
    update.absent(absent)                                   # name not in use
    update.add(absent, 300, "TXT", _quoted(value))
    assert send(node, update).rcode() == dns.rcode.NOERROR
    assert txt(node, absent) == [value]
    for prerequisite, rcode in ((lambda u: u.absent(present), dns.rcode.YXDOMAIN),
                                (lambda u: u.present(chunk_name(202)), dns.rcode.NXDOMAIN),
                                (lambda u: u.absent(present, "TXT"), dns.rcode.YXRRSET),
                                (lambda u: u.present(present, "TXT", '"other"'),
                                 dns.rcode.NXRRSET)):
        before = snapshot(node)
        update = signed(node)
        prerequisite(update)
        update.add(chunk_name(203), 300, "TXT", _quoted(value))
        reply = send(node, update)
        assert reply.rcode() == rcode and reply.had_tsig
        assert snapshot(node) == before and txt(node, chunk_name(203)) == []


@pytest.mark.parametrize("build, rcode", [
    (lambda u: u.add(f"www.{ZONE}.", 300, "A", "192.0.2.1"), dns.rcode.REFUSED),   # non-TXT
    (lambda u: u.add(owners.identity_hashed("bob", ZONE) + ".", 300, "TXT", '"x"'),
     dns.rcode.REFUSED),                                                      # out of scope
    (lambda u: u.add(f"cluster.{ZONE}.", 300, "TXT", '"x"'), dns.rcode.REFUSED),
    (lambda u: u.add(chunk_name(300), 300, "TXT", '"not a chunk"'), dns.rcode.REFUSED),
    (lambda u: u.add(chunk_name(301), 999_999, "TXT", '"x"'), dns.rcode.REFUSED),  # TTL cap
    (lambda u: u.add("elsewhere.example.", 300, "TXT", '"x"'), dns.rcode.NOTZONE),
])
def test_refused_updates_change_nothing_even_alongside_good_ops(node, build, rcode):
    before = snapshot(node)
    update = signed(node)
    update.add(chunk_name(310), 300, "TXT", _quoted(a_chunk("good op")))
    build(update)
    reply = send(node, update)
    assert reply.rcode() == rcode and reply.had_tsig
    assert snapshot(node) == before and txt(node, chunk_name(310)) == []


def test_another_zone_is_notauth(node):
    update = dns.update.UpdateMessage("example.org", keyring=node.keyring,
                                      keyname=node.key_name)
    update.add("a.example.org.", 300, "TXT", '"x"')
    assert send(node, update).rcode() == dns.rcode.NOTAUTH


# --- TSIG errors ----------------------------------------------------------------------------------

def test_an_unknown_key_is_badkey_in_a_tsig_rr(node):
    before = snapshot(node)
    keyring = dns.tsigkeyring.from_text({"nobody.mesh.test.": _b64("11" * 32)})
    update = signed(node, keyring, "nobody.mesh.test.")
    update.add(chunk_name(400), 300, "TXT", _quoted(a_chunk("bad key")))
    with pytest.raises(dns.tsig.PeerBadKey):
        send(node, update)
    assert _raw_error(node, update) == (dns.rcode.NOTAUTH, dns.rcode.BADKEY)
    assert snapshot(node) == before


def test_a_wrong_secret_is_badsig_in_a_tsig_rr(node):
    before = snapshot(node)
    keyring = dns.tsigkeyring.from_text({node.key_name: _b64("22" * 32)})
    update = signed(node, keyring)
    update.add(chunk_name(401), 300, "TXT", _quoted(a_chunk("bad sig")))
    with pytest.raises(dns.tsig.PeerBadSignature):
        send(node, update, tcp=True)
    assert _raw_error(node, update) == (dns.rcode.NOTAUTH, dns.rcode.BADSIG)
    assert snapshot(node) == before


def test_a_stale_time_is_badtime_in_a_signed_tsig_rr(node, monkeypatch):
    import time as real_time

    class Stale:
        @staticmethod
        def time():
            return real_time.time() - 3600
    before = snapshot(node)
    update = signed(node)
    update.add(chunk_name(402), 300, "TXT", _quoted(a_chunk("stale")))
    monkeypatch.setattr("dns.renderer.time", Stale)
    monkeypatch.setattr("dns.message.time", Stale)
    with pytest.raises(dns.tsig.PeerBadTime):
        send(node, update)
    assert _raw_error(node, update) == (dns.rcode.NOTAUTH, dns.rcode.BADTIME)
    monkeypatch.undo()
    assert snapshot(node) == before


def test_a_replayed_update_is_refused(node):
    name = owners.prekeys("alice", ZONE) + "."
    update = signed(node)
    update.add(name, 300, "TXT", _quoted(a_prekey(9)))
    wire = update.to_wire()
    request_mac = update.mac
    first = _exchange(node, wire, request_mac)
    assert first.rcode() == dns.rcode.NOERROR
    update = signed(node)
    update.delete(name)                  # a literal scope suffix: alice may delete here
    assert send(node, update).rcode() == dns.rcode.NOERROR
    before = snapshot(node)
    again = _exchange(node, wire, request_mac)
    assert again.rcode() == dns.rcode.REFUSED and again.had_tsig
    assert snapshot(node) == before and txt(node, name) == []


def test_deletes_through_a_wildcard_scope_are_refused(node):
    update = signed(node)
    update.add(chunk_name(404), 300, "TXT", _quoted(a_chunk("shared pool")))
    assert send(node, update).rcode() == dns.rcode.NOERROR
    before = snapshot(node)
    update = signed(node)
    update.delete(chunk_name(404))
    assert send(node, update).rcode() == dns.rcode.REFUSED
    assert snapshot(node) == before and len(txt(node, chunk_name(404))) == 1


def _raw_error(node, update):
    """(rcode, TSIG error) of the raw answer to ``update``: read with dmfdns's own TSIG
    parser, so the test sees the TSIG RR itself, not only dnspython's reaction to it."""
    from dmfdns.dns import tsig
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(update.to_wire(), ("127.0.0.1", node.dns_port))
        data, _ = sock.recvfrom(65535)
    record = tsig.find(data)
    assert record is not None, "the error response carries no TSIG RR"
    return data[3] & 0xF, record.error


def _exchange(node, wire: bytes, request_mac: bytes):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(wire, ("127.0.0.1", node.dns_port))
        data, _ = sock.recvfrom(65535)
    return dns.message.from_wire(data, keyring=node.keyring, request_mac=request_mac)


def test_an_unsigned_non_claim_update_is_refused(node):
    before = snapshot(node)
    update = dns.update.UpdateMessage(ZONE)
    update.add(chunk_name(405), 300, "TXT", _quoted(a_chunk("unsigned")))
    reply = send(node, update)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.had_tsig
    assert snapshot(node) == before


def test_the_metrics_count_updates_and_tsig_errors(node):
    assert node.metric("dmfdns_dns_updates_total", {"tsig": "signed", "rcode": "NOERROR"}) >= 1
    assert node.metric("dmfdns_dns_update_tsig_errors_total", {"error": "BADKEY"}) >= 1
    assert node.metric("dmfdns_writes_accepted_total", {"path": "update"}) >= 1


def test_a_udp_flood_of_garbage_updates_leaves_the_node_serving(node):
    import random
    import struct
    rng = random.Random(9)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(2000):
            header = struct.pack(">HHHHHH", rng.randrange(65536), 5 << 11, 1,
                                 rng.randrange(3), rng.randrange(3), rng.randrange(3))
            sock.sendto(header + bytes(rng.randrange(256) for _ in range(rng.randint(0, 600))),
                        ("127.0.0.1", node.dns_port))
    update = signed(node)
    update.add(chunk_name(500), 300, "TXT", _quoted(a_chunk("after the flood")))
    assert send(node, update, tcp=True).rcode() == dns.rcode.NOERROR
    assert node.process.poll() is None
    log = (node.dir / "node.log").read_text()
    assert "Traceback" not in log


def test_dmfdns_tsig_revoke_on_the_running_node_takes_effect_at_the_next_update(node):
    import subprocess
    import sys
    reply = register(node.http_port, BOB, "bob@mesh.test", tsig=True)
    keyring = dns.tsigkeyring.from_text({reply["tsig_key_name"]: _b64(
        reply["tsig_secret_hex"])})
    update = signed(node, keyring, reply["tsig_key_name"])
    update.add(chunk_name(600), 300, "TXT", _quoted(a_chunk("before revoke")))
    assert send(node, update).rcode() == dns.rcode.NOERROR
    listed = subprocess.run([sys.executable, "-m", "dmfdns", "tsig", "list", "--config",
                             str(node.config)], capture_output=True, text=True, timeout=60)
    assert reply["tsig_key_name"] in listed.stdout, listed.stderr
    revoked = subprocess.run([sys.executable, "-m", "dmfdns", "tsig", "revoke",
                              "bob@mesh.test", "--config", str(node.config)],
                             capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    update = signed(node, keyring, reply["tsig_key_name"])
    update.add(chunk_name(601), 300, "TXT", _quoted(a_chunk("after revoke")))
    with pytest.raises(dns.tsig.PeerBadKey):
        send(node, update)
    assert txt(node, chunk_name(601)) == []


def test_a_token_issued_by_the_cli_on_the_running_node_writes_at_once(node):
    import subprocess
    import sys
    issued = subprocess.run([sys.executable, "-m", "dmfdns", "token", "issue",
                             "carol@mesh.test", "--config", str(node.config)],
                            capture_output=True, text=True, timeout=60)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    status = http_call(node.http_port, "POST", f"/v1/records/{chunk_name(602).rstrip('.')}",
                       {"value": a_chunk("token write")},
                       {"Authorization": f"Bearer {token}"})[0]
    assert status == 201
