"""``dmfdns token issue|list|revoke``, ``dmfdns tsig list|revoke`` and the argument checks of ``dmfdns manifest publish``
(its network path runs against a real node in tests/integration/test_http_node.py)."""

import hashlib
import io

import pytest

from dmfdns.cli import run
from dmfdns.config import defaults_dir
from dmfdns.store.credentials import TOKEN_PREFIX, Credentials
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.proto import cluster_manifest
from dmfdns.proto.signing import Signer

NOW = 1_800_000_000.0


def dmfdns(*argv, now=NOW):
    out, err = io.StringIO(), io.StringIO()
    status = run(list(argv), now=now, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def lookup(tmp_path, token):
    store = LmdbStore(tmp_path / "data", map_size=2**24)
    try:
        return Credentials(store).lookup_token(token)
    finally:
        store.close()


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(f"""
zones = ["{(defaults_dir() / 'mesh.test.zone').as_posix()}"]
[node]
data_dir = "{(tmp_path / 'data').as_posix()}"
[http]
auth_mode = "multi-tenant"
operator_token = "operator-secret"
""")
    return str(path)


def test_issue_prints_the_token_once_and_stores_its_hash(config, tmp_path):
    status, out, err = dmfdns("token", "issue", "alice@mesh.test", "--note", "laptop",
                              "--expires", "30d", "--config", config)
    assert status == 0, err
    token = out.strip()
    assert token.startswith(TOKEN_PREFIX)
    assert "only its hash is stored" in err
    record = lookup(tmp_path, token)
    assert (record.subject, record.note, record.expires_at) == ("alice@mesh.test", "laptop",
                                                                NOW + 30 * 86400)
    assert token.encode() not in (tmp_path / "data" / "data.mdb").read_bytes()


def test_list_shows_hash_prefixes_and_states(config):
    _, alice, _ = dmfdns("token", "issue", "alice", "--config", config)
    _, bob, _ = dmfdns("token", "issue", "bob", "--expires", "1h", "--config", config)
    status, out, _ = dmfdns("token", "list", "--config", config)
    assert status == 0
    assert "alice" in out and "bob" in out and "live" in out
    assert alice.strip() not in out
    assert hashlib.sha256(alice.strip().encode()).hexdigest()[:16] in out
    _, later, _ = dmfdns("token", "list", "--config", config, now=NOW + 7200)
    assert "bob" not in later
    _, everything, _ = dmfdns("token", "list", "--all", "--config", config, now=NOW + 7200)
    assert "expired" in everything


def test_revoke_by_hash_prefix_or_token(config, tmp_path):
    _, token, _ = dmfdns("token", "issue", "carol", "--config", config)
    token = token.strip()
    prefix = hashlib.sha256(token.encode()).hexdigest()[:10]
    status, out, _ = dmfdns("token", "revoke", prefix, "--config", config)
    assert status == 0 and "carol" in out
    assert lookup(tmp_path, token).revoked_at == NOW
    status, _, err = dmfdns("token", "revoke", token, "--config", config)
    assert status == 1 and "no live token" in err
    status, _, err = dmfdns("token", "revoke", "xyz", "--config", config)
    assert status == 1 and "8 hex digits" in err


def test_issue_checks_its_arguments(config):
    assert dmfdns("token", "issue", "dave", "--expires", "soon", "--config", config)[0] == 1
    assert dmfdns("token", "issue", "dave", "--rate", "0", "--config", config)[0] == 1
    assert dmfdns("token", "issue", "  ", "--config", config)[0] == 1
    assert dmfdns("token", "frobnicate", "--config", config)[0] == 2


def test_a_note_when_the_node_does_not_use_user_tokens(tmp_path):
    path = tmp_path / "open.toml"
    path.write_text(f'[node]\ndata_dir = "{(tmp_path / "d").as_posix()}"\n')
    status, _, err = dmfdns("token", "issue", "erin", "--config", str(path))
    assert status == 0 and "multi-tenant" in err


def test_manifest_publish_refuses_bad_input_before_any_network(tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_text("v=dmp1;t=cluster;AAAA\n")
    status, _, err = dmfdns("manifest", "publish", str(junk), "--node", "http://127.0.0.1:9",
                            "--token", "t")
    assert status == 1 and "not a signed" in err
    operator = Signer(hashlib.sha256(b"cli operator").digest())
    node = cluster_manifest.ClusterNode("n1", "http://127.0.0.1:8053", None)
    wire = tmp_path / "manifest.txt"
    wire.write_text(cluster_manifest.sign(1, int(NOW) - 10, operator.public_key, "mesh.test",
                                          [node], operator))
    status, _, err = dmfdns("manifest", "publish", str(wire), "--node",
                            "http://127.0.0.1:9", "--token", "t")
    assert status == 1 and "expired" in err
    wire.write_text(cluster_manifest.sign(1, int(NOW) + 600, operator.public_key, "mesh.test",
                                          [node], operator))
    status, _, err = dmfdns("manifest", "publish", str(wire), "--node", "ftp://x",
                            "--token", "t")
    assert status == 1 and "http://" in err
    status, _, err = dmfdns("manifest", "publish", str(wire), "--node", "http://127.0.0.1:9",
                            "--token-file", str(tmp_path / "missing"))
    assert status == 1 and "cannot read" in err
    assert dmfdns("manifest", "publish", str(wire), "--node", "http://x")[0] == 2


def test_tsig_list_and_revoke(config, tmp_path):
    store = LmdbStore(tmp_path / "data", map_size=2**30)
    try:
        Credentials(store).mint_tsig("alice-01234567-abcdef.mesh.test", "alice@mesh.test",
                                     "01" * 32, suffixes=("id-0123.mesh.test",), now=NOW,
                                     ttl=86400)
    finally:
        store.close()
    status, out, err = dmfdns("tsig", "list", "--config", config)
    assert status == 0, err
    assert "alice-01234567-abcdef.mesh.test." in out and "id-0123.mesh.test" in out
    assert "live" in out
    status, out, _ = dmfdns("tsig", "revoke", "alice@mesh.test", "--config", config)
    assert status == 0 and "revoked alice-01234567-abcdef.mesh.test." in out
    assert "alice" not in dmfdns("tsig", "list", "--config", config)[1]
    assert "revoked" in dmfdns("tsig", "list", "--all", "--config", config)[1]
    status, _, err = dmfdns("tsig", "revoke", "alice@mesh.test", "--config", config)
    assert status == 1 and "no live TSIG key" in err


def test_tokens_of_an_older_tokens_json_are_imported_once(config, tmp_path):
    import json
    data = tmp_path / "data"
    data.mkdir()
    old_token = TOKEN_PREFIX + "B" * 52
    record = {"hash": hashlib.sha256(old_token.encode()).hexdigest(), "subject": "olga",
              "issued_at": NOW - 10, "expires_at": 0, "revoked_at": None, "note": "old",
              "rate_per_sec": 10.0, "rate_burst": 50}
    (data / "tokens.json").write_text(json.dumps({"version": 1, "tokens": [record]}))
    status, out, err = dmfdns("token", "list", "--config", config)
    assert status == 0 and "olga" in out, err
    assert not (data / "tokens.json").exists() and (data / "tokens.json.imported").exists()
    assert lookup(tmp_path, old_token).subject == "olga"


def test_the_audit_trail_shows_issues_and_revocations(config):
    _, token, _ = dmfdns("token", "issue", "dana@mesh.test", "--config", config)
    dmfdns("token", "revoke", token.strip(), "--config", config, now=NOW + 60)
    status, out, _ = dmfdns("token", "audit", "--config", config)
    assert status == 0
    lines = out.splitlines()
    assert "token-issued" in lines[0] and "dana@mesh.test" in lines[0]
    assert "token-revoked" in lines[1]
    assert dmfdns("token", "audit", "--last", "0", "--config", config)[0] == 1
