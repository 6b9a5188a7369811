"""``dmfdns demo``: a three-node cluster on loopback and one message through it, end to end.

No input, any working directory. The demo makes a fresh operator key and sync token,
picks free loopback ports (never 5353/8053 nor the dev cluster's 5401-5403/8401-8403),
signs a cluster manifest listing the three nodes (id, HTTP and DNS endpoint) and writes
each node a configuration whose ``[cluster]`` section pins that key, names the manifest and
carries the token and a short sync interval (docs/cluster.md). It starts each node as
``python -m dmfdns serve --config ...`` and waits until every one answers ``/health`` and
serves manifest seq 1 on ``/v1/sync/cluster-manifest``.

The conversation then leans on anti-entropy alone: both users write through demo1 only,
alice reads through demo2 and bob through demo3. The demo waits (bounded) until demo2 and
demo3 serve over DNS every record demo1 acknowledged, and prints how long that took; bob
receives through demo3, which no client ever wrote to. Without cluster sync the demo fails
at the first wait. It exits 0 only once the text arrived intact from a verified sender and
the prekey it used was burned.

Every node is stopped and the temporary directory removed on success, on failure and on
SIGINT/SIGTERM; on Linux the nodes also get SIGTERM if the demo process dies outright.
"""

import dataclasses
import os
import pathlib
import secrets
import shutil
import signal
import socket
import tempfile

from twisted.internet import defer, task

from ..client import app, identity_ops, network, prekeys, receive, runner, send
from ..client import state as client_state
from ..config import defaults_dir
from ..proto import cluster_manifest, owners
from ..proto.keys import UserKeys, passphrase_to_x25519
from ..proto.signing import Signer
from . import CommandError
from .demo_procs import DemoFailed, last_log_line, say, start_nodes, stop_nodes, wait_ready

RESERVED_PORTS = {5353, 8053, 5401, 5402, 5403, 8401, 8402, 8403}
NODE_COUNT = 3
CLUSTER_BASE = "mesh.test"
MANIFEST_SEQ = 1
MANIFEST_LIFETIME = 86400
SYNC_INTERVAL = "0.5s"
REPLICATION_TIMEOUT = 20.0
POLL_STEP = 0.1
MESSAGE = "Hello Bob! This message crossed a three-node dmfdns cluster."


class _Stop(Exception):
    """SIGTERM or SIGINT arrived while the demo was not inside the reactor."""


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="start a local three-node cluster and send one message through it",
        description="Start three dmfdns nodes on free loopback ports in a temporary "
                    "directory, create two users, send a message from one to the other "
                    "through the cluster and check it arrives; then stop the nodes and "
                    "remove everything. Exit 0 when the message was delivered.")
    p.set_defaults(handler=run_demo)


def run_demo(args, ctx) -> int:
    out = ctx.stdout
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="dmfdns-demo-"))
    nodes = []
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        say(out, f"1. starting a {NODE_COUNT}-node cluster in {workdir}")
        planned = plan_nodes(workdir)
        cluster = new_cluster(workdir, planned, int(ctx.now))
        say(out, f"   operator key {cluster.operator.public_key.hex()[:16]}... signed "
                 f"manifest seq {MANIFEST_SEQ} for {CLUSTER_BASE}: "
                 f"{', '.join(n.name for n in planned)}")
        start_nodes(planned, lambda node: _write_config(node, cluster), out, nodes)
        wait_ready(nodes, cluster.sync_token, MANIFEST_SEQ)
        say(out, f"   all nodes answer /health and hold manifest seq {MANIFEST_SEQ}; each "
                 f"pulls from the other two every {SYNC_INTERVAL}")
        outcome = runner.run(ctx.get_reactor(), lambda reactor: _conversation(reactor, nodes,
                                                                              workdir, out))
        say(out, f"9. delivery verified: {outcome}")
        return 0
    except (_Stop, runner.Interrupted):
        print("dmfdns: demo interrupted; stopping the nodes", file=ctx.stderr)
        return 130
    except app.CLIENT_ERRORS as exc:
        raise CommandError(f"demo failed: {exc}") from None
    except DemoFailed as exc:
        raise CommandError(f"demo failed: {exc}") from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_nodes(nodes)
        shutil.rmtree(workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        say(out, "   nodes stopped, temporary files removed")


def _raise_stop(signum, frame):
    raise _Stop()


# --- the cluster: key, token, manifest, configurations ----------------------------------

class _Node:
    """One planned node; ``process`` is set once it has been started."""

    def __init__(self, name, home, dns_port, http_port, process=None):
        self.name, self.home, self.process = name, home, process
        self.dns_port, self.http_port = dns_port, http_port

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dns_endpoint(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    @property
    def endpoint(self) -> client_state.NodeEndpoint:
        return client_state.NodeEndpoint(self.http_url, self.dns_endpoint, self.name)


@dataclasses.dataclass(frozen=True)
class DemoCluster:
    """What the nodes share: the operator key that signed the manifest, the manifest file
    they adopt at start, and the bearer token of their sync calls."""

    operator: Signer
    sync_token: str
    manifest_wire: str
    manifest_file: pathlib.Path


def free_port(taken: set) -> int:
    """A loopback port free for both TCP and UDP right now, outside ``taken``."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            if port in taken or port in RESERVED_PORTS:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        taken.add(port)
        return port
    raise DemoFailed("no free loopback port")


def plan_nodes(workdir: pathlib.Path) -> list:
    """Names, directories and ports of every node: the manifest lists them all before the
    first one starts."""
    taken, planned = set(), []
    for index in range(1, NODE_COUNT + 1):
        home = workdir / f"demo{index}"
        home.mkdir()
        planned.append(_Node(home.name, home, free_port(taken), free_port(taken)))
    return planned


def new_cluster(workdir: pathlib.Path, nodes, now: int) -> DemoCluster:
    """A fresh operator key and sync token, and the manifest (seq 1, one day) it signs."""
    operator = Signer(os.urandom(32))
    members = [cluster_manifest.ClusterNode(n.name, n.http_url, n.dns_endpoint) for n in nodes]
    wire = cluster_manifest.sign(MANIFEST_SEQ, now + MANIFEST_LIFETIME, operator.public_key,
                                 CLUSTER_BASE, members, operator)
    manifest_file = workdir / "cluster-manifest.wire"
    manifest_file.write_text(wire + "\n", encoding="ascii")
    return DemoCluster(operator, secrets.token_hex(24), wire, manifest_file)


def node_config(node: _Node, data_dir: pathlib.Path, cluster: DemoCluster) -> str:
    """The node's TOML: the packaged mesh.test zone, its ports, and the cluster it is in."""
    zone = defaults_dir() / "mesh.test.zone"
    return (f"zones = [{_toml(str(zone))}]\n\n[node]\nnode_id = {_toml(node.name)}\n"
            f"data_dir = {_toml(str(data_dir))}\n\n[store]\nmap_size = \"64MiB\"\n\n"
            f"[dns]\nlisten = [\"{node.dns_endpoint}\"]\n\n"
            f"[http]\nlisten = [\"127.0.0.1:{node.http_port}\"]\n\n"
            f"[cluster]\nbase = {_toml(CLUSTER_BASE)}\n"
            f"operator_key = \"{cluster.operator.public_key.hex()}\"\n"
            f"manifest_file = {_toml(str(cluster.manifest_file))}\n"
            f"sync_token = {_toml(cluster.sync_token)}\n"
            f"sync_interval = \"{SYNC_INTERVAL}\"\nfullset_interval = \"5s\"\n"
            f"peer_timeout = \"2s\"\ntick_budget = \"2s\"\n")


def _write_config(node: _Node, cluster: DemoCluster) -> pathlib.Path:
    config = node.home / "node.toml"
    config.write_text(node_config(node, node.home / "data", cluster))
    return config


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- replication ------------------------------------------------------------------------

async def wait_replicated(clock, source, replicas, names, *, timeout=None, step=POLL_STEP):
    """``(records, {node name: seconds})``: how long until each replica served over DNS
    every value that ``source`` serves at ``names``.

    ``source`` and each replica are ``(node, reader)``. The clock starts before ``source``
    is read, right after the writes were acknowledged, so the seconds are what anti-entropy
    took (digest, pull, the store's 1 s stable horizon and the sync interval).
    """
    timeout = REPLICATION_TIMEOUT if timeout is None else timeout
    started = clock.seconds()
    source_node, source_reader = source
    expected = {name: set(await source_reader.read(name)) for name in names}
    for name, values in expected.items():
        if not values:
            raise DemoFailed(f"{source_node.name} does not serve {name}, which it "
                             "acknowledged")
    records = sum(len(values) for values in expected.values())
    took, waiting = {}, list(replicas)
    while True:
        behind = []
        for node, reader in waiting:
            missing = await _missing(reader, expected)
            if missing:
                behind.append((node, reader, missing))
            else:
                took[node.name] = clock.seconds() - started
        if not behind:
            return records, {node.name: took[node.name] for node, _ in replicas}
        if clock.seconds() - started >= timeout:
            node, _, missing = behind[0]
            raise DemoFailed(f"{node.name} still lacks {missing} of the {records} records "
                             f"written to {source_node.name} after {timeout:g} s; is cluster "
                             f"sync running? ({node.name}'s log: {last_log_line(node)})")
        waiting = [(node, reader) for node, reader, _ in behind]
        await task.deferLater(clock, step, lambda: None)


async def _missing(reader, expected: dict) -> int:
    """How many of the expected values ``reader`` does not serve (a failed read: all)."""
    outcomes = await defer.DeferredList([reader.read(name) for name in expected],
                                        consumeErrors=True)
    missing = 0
    for values, (ok, served) in zip(expected.values(), outcomes):
        missing += len(values - set(served)) if ok else len(values)
    return missing


def message_names(sent, sender_spk: bytes, recipient_id: bytes, zone: str) -> list[str]:
    """Every owner name one sent message occupies: its chunks, its slot manifest and its
    claim when a node took one (the demo's users share ``zone``)."""
    msg_key = owners.message_key(sent.msg_id, recipient_id, sender_spk)
    claim = ([owners.claim(owners.slot_for(sent.msg_id), recipient_id, zone)]
             if sent.claimed else [])
    return ([owners.chunk(i, msg_key, zone) for i in range(sent.total_chunks)]
            + [sent.manifest_owner] + claim)


# --- the conversation -------------------------------------------------------------------

def _make_user(workdir, name, nodes):
    passphrase = secrets.token_urlsafe(16)
    kdf_salt = client_state.new_salt()
    keys = UserKeys.from_x25519_private(passphrase_to_x25519(passphrase, kdf_salt))
    profile = client_state.Profile(
        username=name, zone=CLUSTER_BASE, kdf_salt=kdf_salt,
        state_salt=client_state.new_salt(), x25519_public=keys.x25519_public,
        ed25519_public=keys.ed25519_public, nodes=[n.endpoint for n in nodes])
    state = client_state.Secrets(x25519_private=keys.x25519_private)
    home = client_state.UserDir(workdir / f"user-{name}")
    key = client_state.state_key(passphrase, profile.state_salt)
    home.create(profile, state, key)
    return home, key


async def _conversation(reactor, nodes, workdir, out) -> str:
    say(out, "2. creating users alice and bob (passphrase -> Argon2id -> X25519 + Ed25519)")
    users = {name: _make_user(workdir, name, nodes) for name in ("alice", "bob")}
    loaded = {name: (home.load_profile(), home.load_state(key))
              for name, (home, key) in users.items()}
    # One single-node network per node: the demo chooses which node each step touches.
    template = loaded["alice"][0]
    links = {node.name: network.build(reactor, dataclasses.replace(template,
                                                                   nodes=[node.endpoint]))
             for node in nodes}
    try:
        return await _exchange(reactor, nodes, loaded, links, out)
    finally:
        for name, (home, key) in users.items():
            home.save_state(loaded[name][1], key)
        for net in links.values():
            await net.finish()


async def _exchange(reactor, nodes, loaded, links, out) -> str:
    now = int(reactor.seconds())
    entry, alice_node, bob_node = nodes
    (alice_profile, alice), (bob_profile, bob) = loaded["alice"], loaded["bob"]
    writer = links[entry.name].writer
    nets = {"alice": network.Network(links[alice_node.name].reader, writer),
            "bob": network.Network(links[bob_node.name].reader, writer)}
    source = (entry, links[entry.name].reader)
    say(out, f"   both write through {entry.name} only; alice reads through "
             f"{alice_node.name}, bob through {bob_node.name}")
    say(out, f"3. publishing both identities and a pool of 5 prekeys for bob, through "
             f"{entry.name} only")
    names = []
    for name, (profile, state) in loaded.items():
        names.append(await identity_ops.publish_identity(nets[name], profile, state.keys, now))
        say(out, f"   {profile.address} -> {names[-1]}")
    await prekeys.refresh(nets["bob"], bob_profile, bob, 5, now)
    names.append(prekeys.pool_owner(bob_profile.username, bob_profile.zone))
    await writer.drain()
    say(out, f"4. anti-entropy: waiting until {alice_node.name} and {bob_node.name} serve "
             "them over DNS")
    records, took = await wait_replicated(
        reactor, source, [(node, links[node.name].reader) for node in (alice_node, bob_node)],
        names)
    for node_name, seconds in took.items():
        say(out, f"   {node_name} serves all {records} records after {seconds:.1f} s "
                 "(no client writes to it)")
    say(out, "5. each user fetches and pins the other")
    for me, other, node in (("alice", "bob@mesh.test", alice_node),
                            ("bob", "alice@mesh.test", bob_node)):
        found = await identity_ops.find_identity(nets[me], other, now)
        if found is None:
            raise DemoFailed(f"{me} could not find {other} through {node.name}")
        identity_ops.pin(loaded[me][1], found, now)
        say(out, f"   {me} pinned {other} read from {node.name}, fingerprint "
                 f"{found.fingerprint}")
    say(out, f"6. alice sends through {entry.name}: {MESSAGE!r}")
    contact = alice.contact("bob@mesh.test")
    [sent] = await send.send_text(nets["alice"], alice_profile, alice, contact,
                                  MESSAGE.encode(), now)
    await writer.drain()
    say(out, f"   {sent.total_chunks} chunks ({sent.data_chunks} needed) and the manifest "
             f"at {sent.manifest_owner}, sealed to bob's prekey {sent.prekey_id}")
    say(out, f"7. anti-entropy: waiting until {bob_node.name} serves the message")
    names = message_names(sent, alice.keys.ed25519_public, send.recipient_id(contact),
                          alice_profile.zone)
    records, took = await wait_replicated(reactor, source,
                                          [(bob_node, links[bob_node.name].reader)], names)
    say(out, f"   {bob_node.name} serves all {records} records after "
             f"{took[bob_node.name]:.1f} s (no client writes to it)")
    say(out, f"8. bob walks his mailbox slots through {bob_node.name}")
    report = await receive.receive(nets["bob"], bob_profile, bob, int(reactor.seconds()))
    await writer.drain()
    return _check(report, sent, bob, out)


def _check(report, sent, bob, out) -> str:
    if len(report.delivered) != 1:
        raise DemoFailed(f"bob received {len(report.delivered)} messages "
                         f"(dropped: {report.dropped or 'none'})")
    message = report.delivered[0]
    say(out, f"   bob got: {message.body.decode()!r} from {message.sender}")
    if message.body.decode() != MESSAGE:
        raise DemoFailed("the text changed on the way")
    if message.sender != "alice@mesh.test":
        raise DemoFailed("the sender could not be verified")
    if any(p.prekey_id == sent.prekey_id for p in bob.prekeys):
        raise DemoFailed("the prekey was not burned")
    return ("text intact, sender alice@mesh.test verified, "
            f"prekey {sent.prekey_id} burned")
