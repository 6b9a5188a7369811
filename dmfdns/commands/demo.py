"""``dmfdns demo``: a three-node cluster on loopback and one message through it, end to end.

No input, any working directory. The demo writes three node configurations into a fresh
temporary directory, picks free loopback ports (never 5353/8053 nor the dev cluster's
5401-5403/8401-8403), starts each node as ``python -m dmfdns serve --config ...``, creates
two users, publishes their identities and one user's prekeys, lets each pin the other, sends
a message and receives it. It exits 0 only once the text arrived intact from a verified
sender and the prekey it used was burned.

The nodes do not sync with each other here; the users' fan-out writer writes every record to
all three nodes and the union reader reads them back, which is what makes the cluster work
without anti-entropy.

Every node is stopped and the temporary directory removed on success, on failure and on
SIGINT/SIGTERM; on Linux the nodes also get SIGTERM if the demo process dies outright.
"""

import contextlib
import ctypes
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from ..client import app, identity_ops, network, prekeys, receive, runner, send
from ..client import state as client_state
from ..config import defaults_dir
from ..proto.keys import UserKeys, passphrase_to_x25519
from . import CommandError

RESERVED_PORTS = {5353, 8053, 5401, 5402, 5403, 8401, 8402, 8403}
NODE_COUNT = 3
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
MESSAGE = "Hello Bob! This message crossed a three-node dmfdns cluster."
_PR_SET_PDEATHSIG = 1


class _Stop(Exception):
    """SIGTERM or SIGINT arrived while the demo was not inside the reactor."""


def register(sub) -> None:
    p = sub.add_parser("demo", help="start a local three-node cluster and send one message "
                                    "through it")
    p.set_defaults(handler=run_demo)


def run_demo(args, ctx) -> int:
    out = ctx.stdout
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="dmfdns-demo-"))
    nodes = []
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _say(out, f"1. starting {NODE_COUNT} nodes in {workdir}")
        _start_nodes(workdir, out, nodes)
        _wait_ready(nodes)
        _say(out, "   all nodes answer /health")
        outcome = runner.run(ctx.get_reactor(), lambda reactor: _conversation(reactor, nodes,
                                                                              workdir, out))
        _say(out, f"7. delivery verified: {outcome}")
        return 0
    except (_Stop, runner.Interrupted):
        print("dmfdns: demo interrupted; stopping the nodes", file=ctx.stderr)
        return 130
    except app.CLIENT_ERRORS as exc:
        raise CommandError(f"demo failed: {exc}") from None
    except _DemoFailed as exc:
        raise CommandError(f"demo failed: {exc}") from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_nodes(nodes)
        shutil.rmtree(workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _say(out, "   nodes stopped, temporary files removed")


class _DemoFailed(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def _say(out, text: str) -> None:
    print(text, file=out)
    out.flush()


# --- nodes ------------------------------------------------------------------------------

class _Node:
    def __init__(self, name, home, dns_port, http_port, process):
        self.name, self.home, self.process = name, home, process
        self.dns_port, self.http_port = dns_port, http_port

    @property
    def endpoint(self) -> client_state.NodeEndpoint:
        return client_state.NodeEndpoint(f"http://127.0.0.1:{self.http_port}",
                                         f"127.0.0.1:{self.dns_port}", self.name)


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
    raise _DemoFailed("no free loopback port")


def node_config(name: str, data_dir: pathlib.Path, dns_port: int, http_port: int) -> str:
    zone = defaults_dir() / "mesh.test.zone"
    return (f"zones = [{_toml(str(zone))}]\n\n[node]\nnode_id = {_toml(name)}\n"
            f"data_dir = {_toml(str(data_dir))}\n\n[store]\nmap_size = \"64MiB\"\n\n"
            f"[dns]\nlisten = [\"127.0.0.1:{dns_port}\"]\n\n"
            f"[http]\nlisten = [\"127.0.0.1:{http_port}\"]\n")


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _start_nodes(workdir: pathlib.Path, out, nodes: list) -> None:
    """Start the nodes, adding each to ``nodes`` as soon as it exists (so a signal at any
    point leaves every started process in the list the cleanup walks)."""
    taken = set()
    for index in range(1, NODE_COUNT + 1):
        name = f"demo{index}"
        home = workdir / name
        home.mkdir()
        dns_port, http_port = free_port(taken), free_port(taken)
        config = home / "node.toml"
        config.write_text(node_config(name, home / "data", dns_port, http_port))
        with open(home / "node.log", "wb") as log, _signals_held():
            process = subprocess.Popen([sys.executable, "-m", "dmfdns", "serve", "--config",
                                        str(config)], cwd=home, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       preexec_fn=_child_setup)
            nodes.append(_Node(name, home, dns_port, http_port, process))
        _say(out, f"   {name}: DNS 127.0.0.1:{dns_port}, HTTP 127.0.0.1:{http_port}, "
                  f"pid {process.pid}")


@contextlib.contextmanager
def _signals_held():
    """SIGTERM/SIGINT wait until a started process is on the list (then they act)."""
    held = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _child_setup() -> None:
    """In the node process: take signals again, and ask Linux for SIGTERM when the demo
    process dies (best effort; other systems rely on the demo's own cleanup)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_ready(nodes) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    for node in nodes:
        while True:
            if node.process.poll() is not None:
                raise _DemoFailed(f"{node.name} exited with status {node.process.returncode}"
                                  f": {_last_log_line(node)}")
            if _healthy(node.http_port):
                break
            if time.monotonic() > deadline:
                raise _DemoFailed(f"{node.name} did not become healthy within "
                                  f"{START_TIMEOUT:g} s")
            time.sleep(0.1)


def _last_log_line(node) -> str:
    try:
        lines = (node.home / "node.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
            return reply.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _stop_nodes(nodes) -> None:
    for node in nodes:
        if node.process.poll() is None:
            node.process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for node in nodes:
        try:
            node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()


# --- the conversation -------------------------------------------------------------------

def _make_user(workdir, name, nodes):
    passphrase = secrets.token_urlsafe(16)
    kdf_salt = client_state.new_salt()
    keys = UserKeys.from_x25519_private(passphrase_to_x25519(passphrase, kdf_salt))
    profile = client_state.Profile(
        username=name, zone="mesh.test", kdf_salt=kdf_salt, state_salt=client_state.new_salt(),
        x25519_public=keys.x25519_public, ed25519_public=keys.ed25519_public,
        nodes=[n.endpoint for n in nodes])
    state = client_state.Secrets(x25519_private=keys.x25519_private)
    home = client_state.UserDir(workdir / f"user-{name}")
    key = client_state.state_key(passphrase, profile.state_salt)
    home.create(profile, state, key)
    return home, key


async def _conversation(reactor, nodes, workdir, out) -> str:
    _say(out, "2. creating users alice and bob (passphrase -> Argon2id -> X25519 + Ed25519)")
    users = {name: _make_user(workdir, name, nodes) for name in ("alice", "bob")}
    loaded = {name: (home.load_profile(), home.load_state(key))
              for name, (home, key) in users.items()}
    nets = {name: network.build(reactor, profile) for name, (profile, _) in loaded.items()}
    try:
        return await _exchange(reactor, loaded, nets, out)
    finally:
        for name, (home, key) in users.items():
            home.save_state(loaded[name][1], key)
        for net in nets.values():
            await net.finish()


async def _exchange(reactor, loaded, nets, out) -> str:
    now = int(reactor.seconds())
    (alice_profile, alice), (bob_profile, bob) = loaded["alice"], loaded["bob"]
    _say(out, "3. publishing both identities and a pool of 5 prekeys for bob, to every node")
    for name, (profile, state) in loaded.items():
        owner = await identity_ops.publish_identity(nets[name], profile, state.keys, now)
        _say(out, f"   {profile.address} -> {owner}")
    await prekeys.refresh(nets["bob"], bob_profile, bob, 5, now)
    await nets["bob"].writer.drain()
    await nets["alice"].writer.drain()
    _say(out, "4. each user fetches and pins the other")
    for me, other in (("alice", "bob@mesh.test"), ("bob", "alice@mesh.test")):
        found = await identity_ops.find_identity(nets[me], other, now)
        if found is None:
            raise _DemoFailed(f"{me} could not find {other}")
        identity_ops.pin(loaded[me][1], found, now)
        _say(out, f"   {me} pinned {other}, fingerprint {found.fingerprint}")
    _say(out, f"5. alice sends: {MESSAGE!r}")
    [sent] = await send.send_text(nets["alice"], alice_profile, alice,
                                  alice.contact("bob@mesh.test"), MESSAGE.encode(), now)
    await nets["alice"].writer.drain()
    _say(out, f"   {sent.total_chunks} chunks ({sent.data_chunks} needed) and the manifest "
              f"at {sent.manifest_owner}, sealed to bob's prekey {sent.prekey_id}")
    _say(out, "6. bob walks his mailbox slots on the three nodes")
    report = await receive.receive(nets["bob"], bob_profile, bob, int(reactor.seconds()))
    await nets["bob"].writer.drain()
    return _check(report, sent, bob, out)


def _check(report, sent, bob, out) -> str:
    if len(report.delivered) != 1:
        raise _DemoFailed(f"bob received {len(report.delivered)} messages "
                          f"(dropped: {report.dropped or 'none'})")
    message = report.delivered[0]
    _say(out, f"   bob got: {message.body.decode()!r} from {message.sender}")
    if message.body.decode() != MESSAGE:
        raise _DemoFailed("the text changed on the way")
    if message.sender != "alice@mesh.test":
        raise _DemoFailed("the sender could not be verified")
    if any(p.prekey_id == sent.prekey_id for p in bob.prekeys):
        raise _DemoFailed("the prekey was not burned")
    return ("text intact, sender alice@mesh.test verified, "
            f"prekey {sent.prekey_id} burned")
