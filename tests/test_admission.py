"""Write admission (dmfdns.proto.admission): caps, names, and v=dmp1 verification per type."""

import base64
import hashlib
import json
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmfdns.proto import (admission, bootstrap, chunk, claim, cluster_manifest, heartbeat,
                          identity, owners, prekey, revocation, rotation, slot_manifest)
from dmfdns.proto.admission import (MAX_RRSET_WIRE, Admitted, Limits, Refusal, admit,
                                    rrset_wire_size)
from dmfdns.proto.signing import Signer

NOW = 1_800_000_000
ZONE = "mesh.test"
BASE = "mesh.test"
ALICE = Signer(hashlib.sha256(b"admission/alice").digest())
BOB = Signer(hashlib.sha256(b"admission/bob").digest())
OPERATOR = Signer(hashlib.sha256(b"admission/operator").digest())
RECIPIENT_ID = hashlib.sha256(b"recipient x25519 public key").digest()
MSG_ID = bytes(range(16))


def run(name, value, ttl=300, *, stored=None, identities=(), operator_key=None,
        cluster_base=BASE, limits=Limits(), zones=(ZONE,), now=NOW):
    stored = stored or {}
    return admit(name, value, ttl, zones=zones, now=now,
                 lookup_values=lambda n: stored.get(n, []),
                 operator_key=operator_key, cluster_base=cluster_base, limits=limits,
                 lookup_identities=lambda h12, parent: list(identities))


def refused(result, reason):
    assert isinstance(result, Refusal), result
    assert result.reason == reason, result
    assert result.reason in admission.REASONS
    return result


def admitted(result):
    assert isinstance(result, Admitted), result
    return result


# --- record builders --------------------------------------------------------------------------

def a_chunk() -> str:
    return chunk.encode(chunk.make_blob(bytes(range(128)), bytes(32)))


def a_manifest(recipient_id=RECIPIENT_ID, exp=NOW + 300) -> str:
    hashes = [hashlib.sha256(b"blob").digest()] * 2
    return slot_manifest.sign(MSG_ID, ALICE.public_key, recipient_id, 2, 1, 0, NOW, exp,
                              hashes, ALICE)


def an_identity(username="alice", signer=ALICE) -> str:
    return identity.sign(username, bytes(32), signer.public_key, NOW, signer)


def a_prekey(signer=ALICE, exp=NOW + 86400) -> str:
    return prekey.sign(7, bytes(range(32)), exp, signer)


def a_cluster(name=BASE, signer=OPERATOR, exp=NOW + 86400) -> str:
    node = cluster_manifest.ClusterNode("n1", "http://127.0.0.1:8053", None)
    return cluster_manifest.sign(1, exp, signer.public_key, name, [node], signer)


def a_bootstrap(domain="example.org", exp=NOW + 86400) -> str:
    entry = bootstrap.BootstrapEntry(10, BASE, OPERATOR.public_key)
    return bootstrap.sign(1, exp, OPERATOR.public_key, domain, [entry], OPERATOR)


def a_rotation(subject_type=rotation.SUBJECT_CLUSTER, subject=BASE) -> str:
    return rotation.sign(subject_type, subject, ALICE.public_key, BOB.public_key, 1, NOW,
                         NOW + 86400, ALICE, BOB)


def a_revocation(subject_type=rotation.SUBJECT_CLUSTER, subject=BASE, ts=NOW) -> str:
    return revocation.sign(subject_type, subject, ALICE.public_key, 2, ts, ALICE)


def a_heartbeat(ts=NOW) -> str:
    return heartbeat.sign("https://dns.example.org", OPERATOR.public_key, "0.1.0", 1, ZONE,
                          ts, ts + 86400, OPERATOR)


def a_claim(slot=3, ts=NOW, exp=NOW + 300) -> str:
    return claim.sign(MSG_ID, ALICE.public_key, ZONE, slot, ts, exp, ALICE)


def mailbox_name(prefix="slot-3"):
    return f"{prefix}.{owners.mailbox_label(b'x25519 public key')}.{ZONE}"


SLOT_NAME = f"slot-3.mb-{hashlib.sha256(RECIPIENT_ID).hexdigest()[:12]}.{ZONE}"
CHUNK_NAME = f"chunk-0001-{'ab' * 6}.{ZONE}"
CLAIM_NAME = f"claim-3.mb-{'cd' * 6}.{ZONE}"
ID_NAME = owners.identity_hashed("alice", ZONE)
PREKEYS_NAME = owners.prekeys("alice", ZONE)


# --- caps and plain values --------------------------------------------------------------------

def test_plain_text_in_the_zone_is_admitted_with_its_canonical_name():
    result = admitted(run("Hello.Mesh.Test.", "hello world", 60))
    assert (result.name, result.value, result.ttl, result.record_type) == \
        ("hello.mesh.test", "hello world", 60, None)


@pytest.mark.parametrize("ttl", [0, -5, "300", 1.5, True, None])
def test_ttl_must_be_a_positive_integer(ttl):
    assert refused(run("a.mesh.test", "x", ttl), "ttl").message == admission.TTL_TEXT


def test_ttl_and_value_caps_use_the_reference_messages():
    assert refused(run("a.mesh.test", "x", 86401), "ttl").message == "ttl exceeds cap of 86400s"
    admitted(run("a.mesh.test", "x", 86400))
    assert refused(run("a.mesh.test", "x" * 2049), "value_size").message == \
        "value exceeds cap of 2048 bytes"
    admitted(run("a.mesh.test", "x" * 2048))
    small = Limits(max_ttl=10, max_value_bytes=4, max_values_per_name=1)
    refused(run("a.mesh.test", "x", 11, limits=small), "ttl")
    refused(run("a.mesh.test", "xxxxx", 10, limits=small), "value_size")


def test_value_must_be_a_string():
    refused(run("a.mesh.test", b"bytes"), "ttl")


@pytest.mark.parametrize("name", ["", ".", "a..mesh.test", "-a.mesh.test", "a b.mesh.test",
                                  "é.mesh.test", "x" * 64 + ".mesh.test", 42, None])
def test_invalid_names_are_refused(name):
    assert refused(run(name, "v"), "name").message == "invalid record name"


def test_names_outside_the_served_zones_are_refused():
    refused(run("example.com", "v"), "zone")
    refused(run("notmesh.test", "v"), "zone")
    admitted(run("mesh.test", "apex text"))
    admitted(run("deep.er.mesh.test", "v"))


def test_the_longest_served_zone_is_the_one_checked():
    result = run("cluster.sub.mesh.test", "plain", zones=("mesh.test", "sub.mesh.test"))
    # cluster.sub.mesh.test is a DMP owner under sub.mesh.test, so plain text is refused.
    refused(result, "not_dmp")
    # ...while the apex of the inner zone is not a DMP owner.
    admitted(run("sub.mesh.test", "plain", zones=("mesh.test", "sub.mesh.test")))


@pytest.mark.parametrize("value", ['say "hi"', "tab\there", "new\nline", "del\x7f", "caf\u00e9"])
def test_values_must_be_printable_ascii_without_quotes(value):
    assert refused(run("a.mesh.test", value), "value").message == "invalid record value"


def test_rrset_cardinality_cap_counts_stored_values_but_allows_a_refresh():
    stored = {"a.mesh.test": [f"v{i}" for i in range(64)]}
    result = refused(run("a.mesh.test", "new", stored=stored), "rrset_full")
    assert result.message == "RRset at a.mesh.test already holds 64 values"
    admitted(run("a.mesh.test", "v7", stored=stored))
    admitted(run("a.mesh.test", "new", stored={"a.mesh.test": ["v"] * 63}))


def test_rrset_wire_size_cap_keeps_every_name_answerable_over_tcp():
    """28 values of 2,048 bytes fit (28 x 2,069 = 57,932 bytes); the 29th would make 60,001
    and is refused, so the answer always fits a 65,535-byte DNS message."""
    big = ["x" * 2047 + chr(ord("a") + i % 26) + str(i) for i in range(29)]
    big = [value[-2048:] for value in big]
    assert rrset_wire_size(big[:28]) == 28 * (12 + 2048 + 9)
    stored = {"a.mesh.test": big[:28]}
    result = refused(run("a.mesh.test", big[28], stored=stored), "rrset_full")
    assert result.message == ("RRset at a.mesh.test would take 60001 bytes of a DNS message, "
                              "over the cap of 60000")
    admitted(run("a.mesh.test", big[3], stored=stored))      # a refresh is not a new value
    admitted(run("a.mesh.test", "small", stored={"a.mesh.test": big[:27]}))
    header_question_opt = 12 + (255 + 4) + (11 + 4 + 40 + 4 + 128)  # cookie and NSID
    assert MAX_RRSET_WIRE + header_question_opt < 65535


def test_the_rrset_lookup_uses_the_canonical_name():
    seen = []
    admit("A.Mesh.Test", "v", 5, zones=(ZONE,), now=NOW,
          lookup_values=lambda n: seen.append(n) or [])
    assert seen == ["a.mesh.test"]


@given(st.text(max_size=40), st.one_of(st.integers(), st.text(max_size=5), st.none()),
       st.text(max_size=300))
def test_admit_never_raises(name, ttl, value):
    result = run(name, value, ttl)
    assert isinstance(result, (Admitted, Refusal))


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=;+/-", max_size=600))
def test_dmp_looking_garbage_is_never_admitted(tail):
    for prefix in ("v=dmp1;t=chunk;d=", "v=dmp1;t=manifest;d=", "v=dmp1;t=cluster;",
                   "v=dmp1;t=claim;", "v=dmp9;"):
        result = run(CHUNK_NAME, prefix + tail)
        assert isinstance(result, Refusal)


# --- DMP namespace ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [SLOT_NAME, CHUNK_NAME, CLAIM_NAME, ID_NAME, PREKEYS_NAME,
                                  "cluster.mesh.test", "_dmp.mesh.test", "rotate.x.mesh.test",
                                  "_dnsmesh-heartbeat.mesh.test", "_dnsmesh-other.mesh.test",
                                  "dmp.alice.mesh.test", f"mb-{'ab' * 6}.mesh.test",
                                  "slot-x.mb-zz.mesh.test", "chunk-1024-abababababab.mesh.test"])
def test_non_dmp_text_at_dmp_owner_names_is_refused(name):
    refused(run(name, "hello"), "not_dmp")


def test_unknown_dmp_types_are_refused_anywhere():
    refused(run("plain.mesh.test", "v=dmp1;t=mystery;d=AAAA"), "unknown_type")
    refused(run("plain.mesh.test", "v=dmp2;t=chunk;d=AAAA"), "unknown_type")


def test_a_known_type_at_a_plain_name_is_refused():
    refused(run("plain.mesh.test", a_chunk()), "owner")
    refused(run("plain.mesh.test", an_identity()), "owner")


def test_classify_reads_the_dmp_owner_shapes():
    assert admission.classify(SLOT_NAME).kind == admission.SLOT
    assert admission.classify(SLOT_NAME).parts == ("3", hashlib.sha256(RECIPIENT_ID)
                                                   .hexdigest()[:12])
    assert admission.classify(CHUNK_NAME).parts == ("0001", "ab" * 6)
    assert admission.classify(PREKEYS_NAME).kind == admission.PREKEYS
    assert admission.classify(ID_NAME).kind == admission.IDENTITY_HASHED
    assert admission.classify("rotate.dmp.a.b").kind == admission.ROTATE
    assert admission.classify("mesh.test", "mesh.test").kind is None
    assert admission.classify("www.mesh.test").kind is None


# --- per type ---------------------------------------------------------------------------------

def test_chunk_is_admitted_at_a_chunk_name_and_checked_by_its_checksum():
    value = a_chunk()
    assert admitted(run(CHUNK_NAME, value)).record_type == "v=dmp1;t=chunk;d="
    refused(run(SLOT_NAME, value), "owner")
    blob = bytearray(chunk.read_blob(value))
    blob[20] ^= 1  # block no longer matches its checksum
    broken = "v=dmp1;t=chunk;d=" + base64.b64encode(bytes(blob)).decode()
    refused(run(CHUNK_NAME, broken), "invalid_record")


def test_slot_manifest_must_verify_and_match_its_mailbox():
    admitted(run(SLOT_NAME, a_manifest()))
    other = hashlib.sha256(b"someone else").digest()
    refused(run(SLOT_NAME, a_manifest(recipient_id=other)), "owner")
    refused(run(CHUNK_NAME, a_manifest()), "owner")
    tampered = a_manifest()[:-8] + ("A" if a_manifest()[-8] != "A" else "B") + a_manifest()[-7:]
    refused(run(SLOT_NAME, tampered), "invalid_record")


def test_slot_manifest_time_rules():
    refused(run(SLOT_NAME, a_manifest(exp=NOW - 1)), "time")
    refused(run(SLOT_NAME, a_manifest(exp=NOW + 31 * 86400)), "time")


def test_identity_must_sit_at_the_hash_of_its_username():
    admitted(run(ID_NAME, an_identity("alice")))
    refused(run(ID_NAME, an_identity("mallory")), "owner")
    admitted(run("dmp.alice.mesh.test", an_identity("alice")))
    refused(run(PREKEYS_NAME, an_identity()), "owner")


def test_prekey_is_structural_without_an_identity_and_verified_with_one():
    admitted(run(PREKEYS_NAME, a_prekey(signer=BOB)))
    admitted(run(PREKEYS_NAME, a_prekey(signer=ALICE), identities=[an_identity("alice")]))
    refused(run(PREKEYS_NAME, a_prekey(signer=BOB), identities=[an_identity("alice")]),
            "invalid_record")
    # An identity whose username does not hash to this prekey name does not count.
    admitted(run(PREKEYS_NAME, a_prekey(signer=BOB),
                 identities=[an_identity("mallory", signer=ALICE)]))
    refused(run(PREKEYS_NAME, a_prekey(exp=NOW - 1)), "time")
    refused(run(ID_NAME, a_prekey()), "owner")


def test_prekey_lookup_gets_the_name_hash_and_parent():
    calls = []
    admit(PREKEYS_NAME, a_prekey(), 60, zones=(ZONE,), now=NOW, lookup_values=lambda n: [],
          lookup_identities=lambda h12, parent: calls.append((h12, parent)) or [])
    assert calls == [(hashlib.sha256(b"alice").hexdigest()[:12], ZONE)]


def test_cluster_manifest_only_at_our_base_and_only_with_the_pinned_key():
    key = OPERATOR.public_key
    admitted(run("cluster.mesh.test", a_cluster(), operator_key=key))
    refused(run("cluster.mesh.test", a_cluster()), "no_key")
    refused(run("cluster.mesh.test", a_cluster(signer=ALICE), operator_key=key),
            "invalid_record")
    refused(run("cluster.other.mesh.test", a_cluster("other.mesh.test"), operator_key=key),
            "owner")
    refused(run("cluster.mesh.test", a_cluster(), operator_key=key, cluster_base=None), "owner")
    refused(run("cluster.mesh.test", a_cluster(exp=NOW - 1), operator_key=key), "time")


def test_cluster_manifest_must_name_the_base_it_sits_at():
    key = OPERATOR.public_key
    result = run("cluster.sub.mesh.test", a_cluster("other.example"), operator_key=key,
                 cluster_base="sub.mesh.test")
    refused(result, "owner")


def test_bootstrap_must_be_bound_to_its_user_domain():
    admitted(run("_dmp.example.org", a_bootstrap(), zones=("example.org",)))
    refused(run("_dmp.mesh.test", a_bootstrap("example.org")), "owner")
    refused(run("_dmp.example.org", a_bootstrap(exp=NOW - 1), zones=("example.org",)), "time")


def test_rotation_and_revocation_bind_operator_subjects_to_the_owner():
    admitted(run("rotate.cluster.mesh.test", a_rotation()))
    refused(run("rotate._dmp.mesh.test", a_rotation()), "owner")
    admitted(run("rotate._dmp.mesh.test", a_rotation(rotation.SUBJECT_BOOTSTRAP, ZONE)))
    admitted(run("rotate.cluster.mesh.test", a_revocation()))
    refused(run("rotate.cluster.other.mesh.test", a_revocation()), "owner")
    refused(run("rotate.cluster.mesh.test", a_revocation(ts=NOW + 600)), "time")


def test_user_rotations_sit_under_an_identity_name():
    value = a_rotation(rotation.SUBJECT_USER, "alice@mesh.test")
    admitted(run("rotate." + ID_NAME, value))
    admitted(run("rotate.dmp.alice.mesh.test", value))
    refused(run("rotate.cluster.mesh.test", value), "owner")
    refused(run(ID_NAME, value), "owner")


def test_heartbeat_is_verified_with_its_clock_skew_rule():
    admitted(run("_dnsmesh-heartbeat.mesh.test", a_heartbeat()))
    admitted(run("_dnsmesh-seen.mesh.test", a_heartbeat()))
    refused(run("_dnsmesh-heartbeat.mesh.test", a_heartbeat(ts=NOW - 3600)), "time")
    refused(run("_dnsmesh-other.mesh.test", a_heartbeat()), "owner")


def test_claim_must_match_its_slot_label():
    admitted(run(CLAIM_NAME, a_claim(slot=3)))
    refused(run(CLAIM_NAME, a_claim(slot=4)), "owner")
    refused(run(CLAIM_NAME, a_claim(ts=NOW - 600, exp=NOW - 1)), "time")
    refused(run(SLOT_NAME, a_claim()), "owner")


def test_every_identity_vector_is_admitted_at_its_hashed_name():
    # The canonical vectors (docs/wire-format.md §11); identities have no time rule.
    cases = json.loads((pathlib.Path(__file__).parent / "vectors" / "identity_record.json")
                       .read_text())
    outcomes = []
    for case in cases:
        wire = bytes.fromhex(case["expected_wire_hex"]).decode("ascii")
        if "expected_parse_username" in case:
            admitted(run(owners.identity_hashed(case["expected_parse_username"], ZONE), wire))
            outcomes.append("admitted")
        else:  # a tampered vector
            refused(run(ID_NAME, wire), "invalid_record")
            outcomes.append("refused")
    assert outcomes.count("admitted") >= 2 and "refused" in outcomes
