"""The pinned ``dnsmesh`` 0.7.5 CLI against ``node/public/node.toml`` run as a real
``dmfdns serve`` subprocess (on free ports): registration with tokens and with TSIG keys,
publishing over HTTP and over DNS UPDATE, messages both ways, owner isolation, and first
contact through a claim and the intro queue.

How the CLI reaches the node. ``dnsmesh register --node HOST`` keys its saved token by a
bare host name (a ``host:port`` crashes its token store), and its TSIG UPDATE writer targets
``--dns-server``/``--dns-port``. So every dnsmesh process runs with ``HTTP_PROXY`` set to the
node's HTTP port and uses ``http://dmp.mesh.test`` (the example's ``node_hostname``) as its
node and endpoint: its HTTP library sends ``GET http://dmp.mesh.test/...`` in absolute form
to the node itself, which serves it (RFC 9112 section 3.2.2). DNS goes straight to the
node's port. Nothing leaves loopback.

Values over 255 bytes. The 0.7.5 UPDATE writer puts a whole TXT value in one
character-string, so it cannot send a value over 255 bytes: dnspython refuses to build the
message ("string too long") before anything reaches the node. Identities, prekeys, chunks
and claims fit; a slot manifest (about 400 bytes) does not, so an unpatched 0.7.5 TSIG user
cannot send a message at all. The TSIG test shows that failure first, then runs the CLI with
``tests/integration/dnsmesh_txt_split`` on its ``PYTHONPATH``: a ``sitecustomize`` that
replaces only the writer's quoting with one that splits the value into 255-byte
character-strings (RFC 1035 section 3.3.14; what our client and dnspython users send).
Nothing else of the CLI changes; token users need no shim.
"""

import pathlib
import re

import pytest

from dmfdns.proto import owners
from dnsmesh_support import DnsmeshUser, ZONE, printed_messages, reference_bin, txt_values
from public_node import PublicNode

NODE_HOST = "dmp.mesh.test"
TXT_SPLIT_SHIM = pathlib.Path(__file__).resolve().parent / "dnsmesh_txt_split"


@pytest.fixture
def node(tmp_path):
    reference_bin()
    public = PublicNode(tmp_path / "node").start()
    yield public
    public.stop()


class User(DnsmeshUser):
    """One ``dnsmesh`` user of the public node (see the module docstring)."""

    def __init__(self, node, home, username, *, split_txt=False):
        super().__init__(home, username, dns_port=node.dns_port, http_port=node.http_port)
        self.node = node
        proxy = f"http://127.0.0.1:{node.http_port}"
        self.env.update(DMP_TOKENS_HOME=str(home / "tokens"), HTTP_PROXY=proxy,
                        http_proxy=proxy, NO_PROXY="", no_proxy="")
        self.env.pop("PYTHONPATH", None)
        if split_txt:
            self.env["PYTHONPATH"] = str(TXT_SPLIT_SHIM)

    def init(self):
        self.run("init", self.username, "--domain", ZONE, "--endpoint", f"http://{NODE_HOST}",
                 "--dns-host", "127.0.0.1", "--dns-port", str(self.node.dns_port),
                 "--no-default-resolvers", "--no-probe-local-dns")
        config = self.home / "config.yaml"
        text = config.read_text()
        # The claim provider's host is where unsigned claim UPDATEs go (at
        # DMP_PROVIDER_DNS_PORT): the node's address, as an IP literal.
        for key, value in (("claim_provider_override", "http://127.0.0.1"),
                           ("claim_provider_zone", ZONE)):
            text, count = re.subn(rf"^{key}: .*$", f"{key}: {value}", text, flags=re.M)
            assert count == 1, key
        config.write_text(text)
        return self

    def register_token(self):
        self.run("register", "--node", NODE_HOST, "--scheme", "http")
        return self

    def register_tsig(self):
        self.run("tsig", "register", "--node", NODE_HOST, "--scheme", "http",
                 "--dns-server", "127.0.0.1", "--dns-port", str(self.node.dns_port))
        return self

    def publish(self):
        self.run("identity", "publish")
        self.run("identity", "refresh-prekeys", "--count", "3")
        return self

    def recv(self) -> list[str]:
        return printed_messages(self.run("recv").stdout)


def identity_name(username):
    return owners.identity_hashed(username, ZONE)


def test_two_token_users_register_and_message_each_other(node, tmp_path):
    alice = User(node, tmp_path / "alice", "alice").init().register_token().publish()
    bob = User(node, tmp_path / "bob", "bob").init().register_token().publish()
    assert txt_values(node.dns_port, identity_name("alice"))[1]
    alice.run("identity", "fetch", "bob", "--add")
    bob.run("identity", "fetch", "alice", "--add")
    alice.run("send", "bob", "hello bob, over tokens")
    assert bob.recv() == ["hello bob, over tokens"]
    bob.run("send", "alice", "hello alice, back")
    assert alice.recv() == ["hello alice, back"]
    assert node.metric("dmfdns_writes_accepted_total", {"path": "http"}) > 0


def test_two_tsig_users_publish_over_update_and_message_each_other(node, tmp_path):
    carol = User(node, tmp_path / "carol", "carol").init().register_tsig().publish()
    dave = User(node, tmp_path / "dave", "dave").init().register_tsig().publish()
    assert txt_values(node.dns_port, identity_name("carol"))[1]
    carol.run("identity", "fetch", "dave", "--add")
    dave.run("identity", "fetch", "carol", "--add")
    # The unpatched 0.7.5 writer cannot put a slot manifest in one character-string.
    failed = carol.run("send", "dave", "never sent", check=False)
    assert failed.returncode != 0 and "string too long" in failed.stderr
    carol = User(node, carol.home, "carol", split_txt=True)
    dave = User(node, dave.home, "dave", split_txt=True)
    carol.run("send", "dave", "hello dave, over UPDATE")
    assert dave.recv() == ["hello dave, over UPDATE"]
    dave.run("send", "carol", "hello carol, back over UPDATE")
    assert carol.recv() == ["hello carol, back over UPDATE"]
    assert node.metric("dmfdns_writes_accepted_total", {"path": "update"}) > 0
    assert node.metric("dmfdns_dns_updates_total", {"tsig": "signed", "rcode": "NOERROR"}) > 0
    assert node.metric("dmfdns_writes_accepted_total", {"path": "http"}) == 0


def test_a_user_cannot_write_or_delete_another_users_identity(node, tmp_path):
    import base64
    import dns.query
    import dns.rcode
    import dns.tsigkeyring
    import dns.update
    import json
    from node_support import http_call
    erin = User(node, tmp_path / "erin", "erin").init().register_token().publish()
    frank = User(node, tmp_path / "frank", "frank").init().register_tsig().publish()
    erin_id = identity_name("erin")
    frank_id = identity_name("frank")
    before = {name: txt_values(node.dns_port, name)[1] for name in (erin_id, frank_id)}
    # Erin's token against Frank's identity: publish and delete.
    token = json.loads((erin.home / "tokens" / f"{NODE_HOST}.json").read_text())["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert http_call(node.http_port, "POST", f"/v1/records/{frank_id}",
                     {"value": before[erin_id][0]}, bearer)[0] == 401
    assert http_call(node.http_port, "DELETE", f"/v1/records/{frank_id}", None,
                     bearer)[0] == 401
    # Frank's TSIG key against Erin's identity: add and delete.
    config = (frank.home / "config.yaml").read_text()
    key = re.search(r"^tsig_key_name: (.*)$", config, re.M).group(1).strip()
    secret = re.search(r"^tsig_secret_hex: (.*)$", config, re.M).group(1).strip()
    keyring = dns.tsigkeyring.from_text({key: base64.b64encode(bytes.fromhex(secret)).decode()})
    for build in (lambda u: u.add(erin_id + ".", 300, "TXT", '"v=dmp1;t=identity;d=AAAA"'),
                  lambda u: u.delete(erin_id + ".")):
        update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=key)
        build(update)
        reply = dns.query.tcp(update, "127.0.0.1", port=node.dns_port, timeout=5)
        assert reply.rcode() == dns.rcode.REFUSED
    after = {name: txt_values(node.dns_port, name)[1] for name in (erin_id, frank_id)}
    assert after == before


def test_a_stranger_reaches_a_recipient_through_a_claim_and_the_reply_goes_back(node,
                                                                               tmp_path):
    grace = User(node, tmp_path / "grace", "grace", split_txt=True).init().register_tsig()
    grace.publish()
    heidi = User(node, tmp_path / "heidi", "heidi").init().register_token().publish()
    # Grace knows Heidi; Heidi has never heard of Grace.
    grace.run("identity", "fetch", "heidi", "--add")
    grace.run("send", "heidi", "hello heidi, we have not met")
    # The claim came as an unsigned UPDATE (first contact), not through Grace's key.
    assert node.metric("dmfdns_claims_accepted_total") >= 1
    # Unpinned: the message waits in Heidi's intro queue, not her inbox.
    assert "hello heidi, we have not met" not in printed_messages(heidi.run("recv").stdout)
    listing = heidi.run("intro", "list").stdout
    assert "hello heidi, we have not met" in listing
    intro_id = re.search(r"^#(\d+)\s", listing, re.M).group(1)
    trusted = heidi.run("intro", "trust", intro_id, "--label", "grace", "--username", "grace")
    heidi.run("identity", "fetch", "grace", "--add")
    delivered = trusted.stdout + heidi.run("recv").stdout
    assert "hello heidi, we have not met" in delivered, delivered
    assert "(no pending intros)" in heidi.run("intro", "list").stdout
    heidi.run("send", "grace", "hello grace, nice to meet you")
    assert grace.recv() == ["hello grace, nice to meet you"]
