"""Messages between a dmfdns user and a ``dnsmesh`` (reference, 0.7.5) user, both ways,
through one dmfdns node on loopback (docs/compatibility.md §7).

The reference CLI runs from its own virtualenv, named by ``DMFDNS_DNSMESH_BIN`` (``.ci/run``
creates it); these tests fail, not skip, when it is missing. Each ``dnsmesh`` identity lives
in its own ``DMP_CONFIG_HOME``; reads go to the node (``--dns-host/--dns-port
--no-default-resolvers``), writes to its HTTP API, and the claim provider points at the node
too (it refuses unsigned claims, which the reference shrugs off), so nothing leaves loopback.
"""

import os
import pathlib
import re
import subprocess

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from dmfdns.client import identity_ops, network, prekeys, receive, send
from dmfdns.client.state import NodeEndpoint

from client_fakes import make_user
from node_support import dns_port, http_port, node_config, start_node

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]


@pytest.fixture(scope="module")
def dnsmesh_bin():
    path = os.environ.get("DMFDNS_DNSMESH_BIN")
    if not path:
        pytest.fail("DMFDNS_DNSMESH_BIN is not set; .ci/run creates the dnsmesh venv and sets "
                    "it (locally: DMFDNS_DNSMESH_BIN=/tmp/dnsmesh-venv/bin/dnsmesh)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"DMFDNS_DNSMESH_BIN={path} is not an executable dnsmesh")
    return path


@pytest.fixture
def node(tmp_path):
    started = start_node(node_config(tmp_path, tmp_path / "node"))
    yield dns_port(started), http_port(started)
    pytest_twisted.blockon(started.stopService())


class Dnsmesh:
    """One ``dnsmesh`` identity driven through its CLI (each call in a thread, because the
    node it talks to runs on this process's reactor)."""

    def __init__(self, binary, home: pathlib.Path, username, dns_port, http_port):
        self.binary, self.home, self.username = binary, home, username
        self.env = dict(os.environ, DMP_CONFIG_HOME=str(home), DMP_PASSPHRASE=f"{username} pw",
                        DMP_PROVIDER_DNS_PORT=str(dns_port))
        self.dns_port, self.http_port = dns_port, http_port

    async def run(self, *args, check=True):
        result = await threads.deferToThread(
            subprocess.run, [self.binary, *args], env=self.env, capture_output=True,
            text=True, timeout=120)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    async def init(self):
        await self.run("init", self.username, "--domain", "mesh.test", "--endpoint",
                       f"http://127.0.0.1:{self.http_port}", "--dns-host", "127.0.0.1",
                       "--dns-port", str(self.dns_port), "--no-default-resolvers",
                       "--no-probe-local-dns")
        config = self.home / "config.yaml"
        text = config.read_text()
        for key, value in (("claim_provider_override", f"http://127.0.0.1:{self.http_port}"),
                           ("claim_provider_zone", "mesh.test")):
            text, count = re.subn(rf"^{key}: .*$", f"{key}: {value}", text, flags=re.M)
            assert count == 1, key
        config.write_text(text)


def _dmfdns_user(name, dns_port, http_port):
    user = make_user(name, nodes=[NodeEndpoint(f"http://127.0.0.1:{http_port}",
                                               f"127.0.0.1:{dns_port}")])
    return user, network.build(reactor, user[0], dns_timeout=1.0)


def _now():
    return int(reactor.seconds())


@pytest_twisted.ensureDeferred
async def test_a_dnsmesh_user_sends_to_a_dmfdns_user(dnsmesh_bin, node, tmp_path):
    dns_port, http_port = node
    (bob, net) = _dmfdns_user("bob", dns_port, http_port)
    carol = Dnsmesh(dnsmesh_bin, tmp_path / "carol", "carol", dns_port, http_port)
    try:
        await identity_ops.publish_identity(net, bob[0], bob[1].keys, _now())
        pool = await prekeys.refresh(net, bob[0], bob[1], 3, _now())
        await carol.init()
        await carol.run("identity", "publish", "--advertise-v2")
        found = await identity_ops.find_identity(net, "carol@mesh.test", _now())
        assert found is not None and 2 in found.record.versions
        identity_ops.pin(bob[1], found, _now())

        # By address: the reference never uses prekeys for user@host contacts (quirk 3).
        await carol.run("identity", "fetch", "bob@mesh.test", "--add")
        await carol.run("send", "bob@mesh.test", "hello bob, from dnsmesh")
        # Under the bare username with pinned keys it does: the forward-secret path.
        keys = bob[1].keys
        await carol.run("contacts", "add", "bob", keys.x25519_public.hex(), "--signing-key",
                        keys.ed25519_public.hex())
        await carol.run("send", "bob", "sealed to one of your prekeys")

        report = await receive.receive(net, bob[0], bob[1], _now())
        await net.writer.drain()
        bodies = {m.body: m for m in report.delivered}
        assert set(bodies) == {b"hello bob, from dnsmesh", b"sealed to one of your prekeys"}
        assert all(m.sender == "carol@mesh.test" and m.contact == "carol@mesh.test"
                   for m in report.delivered)
        assert bodies[b"hello bob, from dnsmesh"].prekey_id == 0
        used = bodies[b"sealed to one of your prekeys"].prekey_id
        assert used in {p.prekey_id for p in pool}
        assert used not in {p.prekey_id for p in bob[1].prekeys}
        assert len(await net.reader.read(prekeys.pool_owner("bob", "mesh.test"))) == 2
    finally:
        await net.finish()


@pytest_twisted.ensureDeferred
async def test_a_dmfdns_user_sends_to_a_dnsmesh_user(dnsmesh_bin, node, tmp_path):
    dns_port, http_port = node
    (bob, net) = _dmfdns_user("bob", dns_port, http_port)
    carol = Dnsmesh(dnsmesh_bin, tmp_path / "carol", "carol", dns_port, http_port)
    try:
        await carol.init()
        await carol.run("identity", "publish", "--advertise-v2")
        await carol.run("identity", "refresh-prekeys", "--count", "3")
        await identity_ops.publish_identity(net, bob[0], bob[1].keys, _now())
        found = await identity_ops.find_identity(net, "carol@mesh.test", _now())
        contact = identity_ops.pin(bob[1], found, _now())
        await carol.run("identity", "fetch", "bob@mesh.test", "--add")

        [short] = await send.send_text(net, bob[0], bob[1], contact,
                                       "hello carol, from dmfdns".encode(), _now())
        assert short.prekey_id != 0                  # one of carol's published prekeys
        long_text = "".join(f"line {i:04d} of a long message\n" for i in range(200))
        parts = await send.send_text(net, bob[0], bob[1], contact, long_text.encode(), _now())
        assert len(parts) == 2
        await net.writer.drain()

        received = await carol.run("recv")
        bodies = _printed_messages(received.stdout)
        assert len(bodies) == 3 and "hello carol, from dmfdns" in bodies
        # The reference shows each part as a message of its own (the "part" header key is
        # an extension it ignores), with the envelope removed and no text lost.
        pieces = [b for b in bodies if b != "hello carol, from dmfdns"]
        assert long_text in (pieces[0] + pieces[1], pieces[1] + pieces[0])
        assert "DMPV2:" not in received.stdout
        again = await carol.run("recv")
        assert _printed_messages(again.stdout) == []
    finally:
        await net.finish()


def _printed_messages(out: str) -> list[str]:
    """The texts ``dnsmesh recv`` printed: ``from <spk16>...``, ``  ts=N``, ``  <text>``
    and a blank line per message."""
    blocks = re.findall(r"^from [0-9a-f]{16}\.\.\.\n  ts=\d+\n  (.*?)\n\n"
                        r"(?=from [0-9a-f]{16}\.\.\.\n|\Z|[^\n]*intro)",
                        out, flags=re.M | re.S)
    return blocks
