"""``records.inspect`` for every v=dmp1 type, and the ``dmfdns record inspect`` command."""

import hashlib
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.cli import run
from dmfdns.proto import (b64, bootstrap, chunk, claim, cluster_manifest as cm, heartbeat,
                          identity, prefixes, prekey, records, revocation, rotation,
                          slot_manifest)
from dmfdns.proto.keys import fingerprint
from dmfdns.proto.signing import Signer

NOW = 1_800_000_000
ALICE = Signer(bytes(range(32)))
BOB = Signer(bytes(range(1, 33)))
OPERATOR = Signer(bytes(range(2, 34)))
X25519 = bytes(range(40, 72))
MSG_ID = bytes(range(16))
RECIPIENT = bytes(range(80, 112))
BLOB = hashlib.sha256(bytes(128)).digest()[:8] + bytes(128) + bytes(range(32))


def flip_last_signature_byte(wire: str, prefix: str) -> str:
    blob = b64.decode_after_prefix(wire, prefix)
    return prefix + b64.encode(blob[:-1] + bytes([blob[-1] ^ 1]))


def manifest(exp=NOW + 300, hashes=True) -> str:
    return slot_manifest.sign(MSG_ID, ALICE.public_key, RECIPIENT, 2, 1, 0, NOW, exp,
                              [bytes(32), bytes(32)] if hashes else [], ALICE,
                              legacy=not hashes)


def cluster(exp=NOW + 3600) -> str:
    return cm.sign(7, exp, OPERATOR.public_key, "mesh.example.com",
                   [cm.ClusterNode("n1", "https://n1.example.com")], OPERATOR)


def boot(exp=NOW + 3600) -> str:
    entry = bootstrap.BootstrapEntry(10, "mesh.example.com", OPERATOR.public_key)
    return bootstrap.sign(3, exp, OPERATOR.public_key, "example.com", [entry], OPERATOR)


def rotate(exp=NOW + 3600) -> str:
    return rotation.sign(rotation.SUBJECT_USER, "alice@example.com", ALICE.public_key,
                         BOB.public_key, 1, NOW, exp, ALICE, BOB)


def revoke(ts=NOW) -> str:
    return revocation.sign(rotation.SUBJECT_USER, "alice@example.com", ALICE.public_key,
                           revocation.REASON_COMPROMISE, ts, ALICE)


def beat(ts=NOW) -> str:
    return heartbeat.sign("https://node1.example.com", OPERATOR.public_key, "0.1",
                          heartbeat.CAP_CLAIM_PROVIDER, "mesh.example.com", ts, ts + 3600,
                          OPERATOR)


def claim_of(ts=NOW, exp=NOW + 300) -> str:
    return claim.sign(MSG_ID, ALICE.public_key, "mesh.test", 3, ts, exp, ALICE)


IDENTITY_WIRE = identity.sign("alice", X25519, ALICE.public_key, NOW, ALICE, versions=[1, 2])
PREKEY_WIRE = prekey.sign(5, X25519, NOW + 86400, ALICE)

VALID = {
    records.CHUNK: chunk.encode(BLOB),
    records.SLOT_MANIFEST: manifest(),
    records.IDENTITY: IDENTITY_WIRE,
    records.PREKEY: PREKEY_WIRE,
    records.CLUSTER_MANIFEST: cluster(),
    records.BOOTSTRAP: boot(),
    records.ROTATION: rotate(),
    records.REVOCATION: revoke(),
    records.HEARTBEAT: beat(),
    records.CLAIM: claim_of(),
}

# (expected type, value, key, reason fragment)
INVALID = [
    (records.CHUNK, prefixes.CHUNK + b64.encode(bytes(8) + BLOB[8:]), None, "checksum"),
    (records.CHUNK, prefixes.CHUNK + b64.encode(BLOB[:-1]), None, "168 bytes"),
    (records.SLOT_MANIFEST, manifest(exp=NOW - 1), None, "expired"),
    (records.SLOT_MANIFEST, manifest(exp=NOW + 31 * 86400), None, "30 days"),
    (records.SLOT_MANIFEST, manifest(), BOB.public_key, "not by the given key"),
    (records.SLOT_MANIFEST, flip_last_signature_byte(manifest(), prefixes.SLOT_MANIFEST), None,
     "bad signature"),
    (records.IDENTITY, flip_last_signature_byte(IDENTITY_WIRE, prefixes.IDENTITY), None,
     "bad signature"),
    (records.IDENTITY, IDENTITY_WIRE + "=", None, "base64"),
    (records.IDENTITY, IDENTITY_WIRE, BOB.public_key, "not by the given key"),
    (records.PREKEY, PREKEY_WIRE, BOB.public_key, "does not verify"),
    (records.PREKEY, prekey.sign(5, X25519, NOW - 1, ALICE), None, "expired"),
    (records.PREKEY, prekey.sign(5, X25519, NOW + 31 * 86400, ALICE), None, "30 days"),
    (records.PREKEY, PREKEY_WIRE[:-4], None, "108-byte"),
    (records.PREKEY, PREKEY_WIRE[:-1], None, "base64"),
    (records.CLUSTER_MANIFEST, cluster(exp=NOW - 1), None, "expired"),
    (records.CLUSTER_MANIFEST, cluster(exp=NOW + 6 * 365 * 86400), None, "5 years"),
    (records.CLUSTER_MANIFEST, cluster(), ALICE.public_key, "not by the given key"),
    (records.CLUSTER_MANIFEST, prefixes.CLUSTER + "A" * 1200, None, "longer than 1200"),
    (records.CLUSTER_MANIFEST, flip_last_signature_byte(cluster(), prefixes.CLUSTER), None,
     "bad signature"),
    (records.BOOTSTRAP, boot(exp=NOW - 1), None, "expired"),
    (records.BOOTSTRAP, boot(), ALICE.public_key, "not by the given key"),
    (records.ROTATION, rotate(exp=NOW - 1), None, "expired"),
    (records.ROTATION, rotate(), BOB.public_key, "not by the given key"),
    (records.REVOCATION, revoke(ts=NOW + 301), None, "ahead"),
    (records.REVOCATION, revoke(), BOB.public_key, "not by the given key"),
    (records.HEARTBEAT, beat(ts=NOW - 301), None, "5 minutes"),
    (records.HEARTBEAT, beat(), ALICE.public_key, "not by the given key"),
    (records.CLAIM, claim_of(ts=NOW - 600, exp=NOW), None, "expired"),
    (records.CLAIM, flip_last_signature_byte(claim_of(), prefixes.CLAIM), None,
     "bad signature"),
    (records.UNKNOWN, "v=dmp1;t=mailbox;d=AAAA", None, "unknown v=dmp record type"),
    (records.UNKNOWN, "v=dmp2;t=chunk;d=AAAA", None, "unknown v=dmp record type"),
    (records.TEXT, "hello world", None, "not a DMP record"),
    (records.TEXT, "", None, "not a DMP record"),
]


def _key_of(key):
    return key.hex() if key else None


# -- the dispatcher ----------------------------------------------------------------------------

@pytest.mark.parametrize("type_name", list(VALID))
def test_every_type_is_recognised_and_valid(type_name):
    result = records.inspect(VALID[type_name], now=NOW)
    assert (result.type, result.valid) == (type_name, True)
    assert result.fields
    json.dumps(result.fields)  # JSON-friendly throughout


@pytest.mark.parametrize("type_name, value, key, reason", INVALID,
                         ids=[f"{t}-{r}" for t, _, _, r in INVALID])
def test_invalid_values_name_their_problem(type_name, value, key, reason):
    result = records.inspect(value, now=NOW, key=key)
    assert (result.type, result.valid) == (type_name, False)
    assert reason in result.reason


def test_every_prefix_has_an_inspector():
    assert set(records._INSPECTORS) == set(prefixes.ALL)


def test_fields_show_bytes_as_hex_and_nested_records_as_objects():
    fields = records.inspect(VALID[records.CLUSTER_MANIFEST], now=NOW).fields
    assert fields["operator_spk"] == OPERATOR.public_key.hex()
    assert fields["nodes"] == [{"node_id": "n1", "http_endpoint": "https://n1.example.com",
                                "dns_endpoint": None}]
    ident = records.inspect(IDENTITY_WIRE, now=NOW).fields
    assert ident["versions"] == [1, 2]
    assert ident["fingerprint"] == fingerprint(X25519, ALICE.public_key)
    assert ident["user_id"] == hashlib.sha256(X25519).hexdigest()
    assert records.inspect(VALID[records.CHUNK], now=NOW).fields["hash"] == (
        hashlib.sha256(BLOB).hexdigest())


def test_prekey_is_structural_without_a_key_and_verified_with_one():
    structural = records.inspect(PREKEY_WIRE, now=NOW)
    assert structural.valid and "structure" in structural.reason
    assert structural.fields["signature_checked"] is False
    verified = records.inspect(PREKEY_WIRE, now=NOW, key=ALICE.public_key)
    assert verified.valid and verified.reason is None
    assert verified.fields["signature_checked"] is True


def test_manifest_expiry_is_judged_although_its_parser_leaves_it_to_the_caller():
    wire = manifest(exp=NOW + 300)
    assert slot_manifest.parse_and_verify(wire, now=NOW + 301) is not None
    assert records.inspect(wire, now=NOW + 300).valid
    assert records.inspect(wire, now=NOW + 301).reason == "expired"


def test_legacy_manifest_is_valid_with_a_note():
    result = records.inspect(manifest(hashes=False), now=NOW)
    assert result.valid and result.fields["legacy"] is True
    assert "refuse" in result.reason
    hashed = records.inspect(manifest(), now=NOW)
    assert hashed.reason is None and hashed.fields["chunk_hashes"] == [bytes(32).hex()] * 2


def test_matching_keys_keep_records_valid():
    for type_name, key in [(records.IDENTITY, ALICE), (records.SLOT_MANIFEST, ALICE),
                           (records.CLUSTER_MANIFEST, OPERATOR), (records.BOOTSTRAP, OPERATOR),
                           (records.ROTATION, ALICE), (records.REVOCATION, ALICE),
                           (records.HEARTBEAT, OPERATOR), (records.CLAIM, ALICE)]:
        result = records.inspect(VALID[type_name], now=NOW, key=key.public_key)
        assert result.valid, (type_name, result.reason)


def test_chunk_ignores_a_key_and_says_so():
    result = records.inspect(VALID[records.CHUNK], now=NOW, key=ALICE.public_key)
    assert result.valid and "no signature" in result.reason


def test_bad_key_argument_is_a_programming_error():
    with pytest.raises(ValueError):
        records.inspect(VALID[records.CHUNK], now=NOW, key=b"short")


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    result = records.inspect(text, now=NOW)
    assert isinstance(result.valid, bool) and (result.valid or result.reason)


@given(st.sampled_from(prefixes.ALL), st.binary(max_size=700))
@settings(max_examples=2000)
def test_random_base64_behind_every_prefix_never_raises(prefix, data):
    result = records.inspect(prefix + b64.encode(data), now=NOW, key=ALICE.public_key)
    assert result.type not in (records.UNKNOWN, records.TEXT)
    json.dumps(result.fields)


# -- the command -------------------------------------------------------------------------------

def cli(*argv, now=NOW):
    out, err = io.StringIO(), io.StringIO()
    status = run(["record", "inspect", *argv], now=now, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("type_name", list(VALID))
def test_cli_valid_value_exits_0_with_one_json_object(type_name):
    status, out, err = cli("--json", VALID[type_name])
    assert status == 0 and err == ""
    obj = json.loads(out)
    assert obj["type"] == type_name and obj["valid"] is True
    assert obj["fields"] == records.inspect(VALID[type_name], now=NOW).fields


@pytest.mark.parametrize("type_name, value, key, reason", INVALID,
                         ids=[f"{t}-{r}" for t, _, _, r in INVALID])
def test_cli_invalid_value_exits_1_with_one_line_reason(type_name, value, key, reason):
    args = ["--key", key.hex()] if key else []
    status, out, err = cli(*args, "--json", value)
    assert status == 1
    assert err.count("\n") == 1 and reason in err
    assert json.loads(out)["valid"] is False


def test_cli_expired_cluster_manifest_exits_1():
    status, out, err = cli(cluster(exp=NOW - 1))
    assert status == 1
    assert err == "dmfdns: invalid cluster_manifest: expired\n"
    assert "valid: no" in out and "cluster_name: mesh.example.com" in out


def test_cli_human_form_lists_the_fields():
    status, out, _ = cli(VALID[records.CLUSTER_MANIFEST])
    assert status == 0
    lines = out.splitlines()
    assert lines[:2] == ["type: cluster_manifest", "valid: yes"]
    assert "seq: 7" in lines
    assert f"operator_spk: {OPERATOR.public_key.hex()}" in lines
    assert "  - node_id: n1" in lines and "    dns_endpoint: -" in lines
    assert any(line.startswith(f"exp: {NOW + 3600} (2027-") for line in lines)


def test_cli_now_defaults_to_the_context_clock_and_can_be_overridden():
    wire = cluster(exp=NOW + 10)
    assert cli(wire, now=NOW + 5.9)[0] == 0
    assert cli(wire, now=NOW + 11)[0] == 1
    assert cli("--now", str(NOW), wire, now=NOW + 11)[0] == 0


def test_cli_key_binds_the_signer():
    assert cli("--key", OPERATOR.public_key.hex(), VALID[records.CLUSTER_MANIFEST])[0] == 0
    assert cli("--key", ALICE.public_key.hex(), VALID[records.CLUSTER_MANIFEST])[0] == 1
    status, out, _ = cli("--json", "--key", ALICE.public_key.hex().upper(), PREKEY_WIRE)
    assert status == 0 and json.loads(out)["fields"]["signature_checked"] is True


@pytest.mark.parametrize("argv", [
    ["--key", "zz", "x"],
    ["--key", "00" * 31, "x"],
    ["--now", "yesterday", "x"],
    ["--now", "-5", "x"],
    [],
    ['"unterminated'],
])
def test_cli_usage_errors_exit_2(argv):
    status, out, err = cli(*argv)
    assert status == 2 and out == ""
    assert err.startswith("dmfdns: ")


def test_cli_reads_the_value_from_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(VALID[records.IDENTITY] + "\n"))
    status, out, _ = cli("--json", "-")
    assert status == 0 and json.loads(out)["fields"]["username"] == "alice"


def test_cli_joins_quoted_character_strings_as_dig_prints_them():
    wire = VALID[records.CLUSTER_MANIFEST]
    quoted = f'"{wire[:255]}" "{wire[255:]}"'
    status, out, _ = cli("--json", quoted)
    assert status == 0 and json.loads(out)["type"] == records.CLUSTER_MANIFEST


def test_join_quoted_handles_escapes():
    from dmfdns.commands.record import join_quoted
    assert join_quoted(r'"a\"b" "\099\\"') == 'a"bc\\'
    assert join_quoted('"a" b') is None
    assert join_quoted(r'"\256"') is None
