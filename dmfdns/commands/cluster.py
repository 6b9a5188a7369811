"""Operator commands of a cluster (docs/cluster.md).

* ``dmfdns manifest sign``: the member list plus the operator key give a signed
  ``v=dmp1;t=cluster;`` wire (publish it at ``cluster.<base>``, or give it to nodes as
  ``[cluster] manifest_file``);
* ``dmfdns bootstrap sign``: a zone operator's ``_dmp.<domain>`` record pointing at clusters;
* ``dmfdns cluster bootstrap``: a new node given only a seed domain, the pinned zone-operator
  key, a resolver and the sync token resolves ``_dmp.<domain>``, walks its entries by
  priority to a verifiable ``cluster.<base>`` manifest, finds itself in it by node id, and
  runs as a member: it adopts the manifest, syncs with the other nodes and backfills.
"""

import dataclasses
import pathlib
import re

from twisted.internet import defer

from ..client.discovery import DiscoveryError, discover
from ..client.dnsquery import DnsClient, parse_server
from ..client.resolver import ReadError, ResolverPool
from ..config import ConfigError, parse_duration
from ..proto import bootstrap, cluster_manifest, owners
from ..proto.signing import Signer
from . import CommandError
from .keys import read_seed_file
from ..node import make_service
from .serve import STARTUP_ERRORS, load, start_logging, summary

MANIFEST_FILE = "cluster-manifest.wire"
DEFAULT_LIFETIME = "30d"
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def add_manifest_sign(manifest_actions) -> None:
    """``dmfdns manifest sign``, added to the ``manifest`` group of ``commands.manifest``."""
    sign = manifest_actions.add_parser(
        "sign", help="member list + operator key -> signed v=dmp1;t=cluster; wire",
        description="Print the signed manifest (one line). Each --node is "
                    "ID=HTTP_ENDPOINT[,DNS_ENDPOINT], e.g. n1=http://127.0.0.1:8401,"
                    "127.0.0.1:5401.")
    sign.add_argument("--key", required=True, metavar="KEYFILE", help="operator key seed")
    sign.add_argument("--cluster", required=True, metavar="BASE",
                      help="cluster base domain (the manifest lives at cluster.<BASE>)")
    sign.add_argument("--seq", required=True, type=_u64, help="higher than the last one")
    _lifetime(sign)
    sign.add_argument("--node", required=True, action="append", metavar="SPEC",
                      help="ID=HTTP_ENDPOINT[,DNS_ENDPOINT]; repeat for every node")
    sign.add_argument("--out", metavar="FILE", help="write the wire here instead of stdout")
    sign.set_defaults(handler=manifest_sign)


def register(sub) -> None:
    boot = sub.add_parser("bootstrap", help="sign a _dmp.<domain> bootstrap record")
    boot_actions = boot.add_subparsers(dest="bootstrap_command", metavar="ACTION")
    boot_actions.required = True
    bsign = boot_actions.add_parser(
        "sign", help="zone operator key + cluster entries -> signed v=dmp1;t=bootstrap; wire",
        description="Each --entry is PRIORITY:BASE:OPERATOR_PUBKEY_HEX (lower priority "
                    "first, as MX).")
    bsign.add_argument("--key", required=True, metavar="KEYFILE",
                       help="the zone operator's key seed")
    bsign.add_argument("--domain", required=True, help="the user domain (_dmp.<DOMAIN>)")
    bsign.add_argument("--seq", required=True, type=_u64)
    _lifetime(bsign)
    bsign.add_argument("--entry", required=True, action="append", metavar="SPEC",
                       help="PRIORITY:BASE:OPERATOR_PUBKEY_HEX; repeat for more clusters")
    bsign.add_argument("--out", metavar="FILE", help="write the wire here instead of stdout")
    bsign.set_defaults(handler=bootstrap_sign)

    cluster = sub.add_parser("cluster", help="join a cluster")
    cluster_actions = cluster.add_subparsers(dest="cluster_command", metavar="ACTION")
    cluster_actions.required = True
    join = cluster_actions.add_parser(
        "bootstrap", help="find the cluster from a seed domain over DNS and run as a member",
        description="Resolve _dmp.<SEED> through RESOLVER, verify it with the pinned key, "
                    "walk its entries to a verifiable cluster.<base> manifest that lists "
                    "this node's id ([node] node_id), then serve as a member of it.")
    join.add_argument("--seed", required=True, metavar="DOMAIN")
    join.add_argument("--pin", required=True, metavar="HEX",
                      help="the zone operator's public key (64 hex) that signs _dmp.<DOMAIN>")
    join.add_argument("--resolver", required=True, metavar="HOST:PORT")
    join.add_argument("--sync-token", metavar="TOKEN", help="the cluster's sync token")
    join.add_argument("--sync-token-file", metavar="FILE",
                      help="a file whose first line is the sync token")
    join.add_argument("--config", metavar="FILE",
                      help="this node's configuration (TOML); default: the embedded one")
    join.add_argument("--timeout", default="10s", metavar="DURATION",
                      help="give up discovery after this long (default 10s)")
    join.set_defaults(handler=cluster_bootstrap)


# --- argument parsing -------------------------------------------------------------------------

def _u64(text: str) -> int:
    if not text.isdigit() or int(text) >= 2**64:
        raise ValueError(text)
    return int(text)


def _lifetime(parser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--exp", type=_u64, metavar="UNIX_SECONDS", help="absolute expiry")
    group.add_argument("--expires-in", metavar="DURATION", default=DEFAULT_LIFETIME,
                       help=f"expiry from now, e.g. 90d (default {DEFAULT_LIFETIME})")


def _expiry(args, now: float) -> int:
    if args.exp is not None:
        return args.exp
    seconds = parse_duration(args.expires_in)
    if seconds is None or seconds <= 0:
        raise CommandError(f"--expires-in {args.expires_in!r}: give a duration such as 30d")
    return int(now + seconds)


def _node(spec: str) -> cluster_manifest.ClusterNode:
    node_id, sep, endpoints = spec.partition("=")
    http, _, dns = endpoints.partition(",")
    if not sep or not node_id or not http:
        raise CommandError(f"--node {spec!r}: expected ID=HTTP_ENDPOINT[,DNS_ENDPOINT]")
    return cluster_manifest.ClusterNode(node_id, http, dns or None)


def _entry(spec: str) -> bootstrap.BootstrapEntry:
    parts = spec.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not _HEX_KEY.fullmatch(parts[2]):
        raise CommandError(f"--entry {spec!r}: expected PRIORITY:BASE:OPERATOR_PUBKEY_HEX")
    return bootstrap.BootstrapEntry(int(parts[0]), parts[1], bytes.fromhex(parts[2]))


def _emit(wire: str, out: str | None, ctx) -> None:
    if out:
        try:
            pathlib.Path(out).write_text(wire + "\n", encoding="ascii")
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror}") from None
        print(f"wrote {out}", file=ctx.stderr)
    else:
        print(wire, file=ctx.stdout)


# --- signing ----------------------------------------------------------------------------------

def manifest_sign(args, ctx) -> int:
    signer = Signer(read_seed_file(args.key))
    nodes = [_node(spec) for spec in args.node]
    try:
        wire = cluster_manifest.sign(args.seq, _expiry(args, ctx.now), signer.public_key,
                                     args.cluster, nodes, signer)
    except ValueError as exc:
        raise CommandError(f"cannot sign the manifest: {exc}") from None
    _emit(wire, args.out, ctx)
    print(f"operator key {signer.public_key.hex()}; publish at {owners.cluster(args.cluster)}",
          file=ctx.stderr)
    return 0


def bootstrap_sign(args, ctx) -> int:
    signer = Signer(read_seed_file(args.key))
    entries = [_entry(spec) for spec in args.entry]
    try:
        wire = bootstrap.sign(args.seq, _expiry(args, ctx.now), signer.public_key, args.domain,
                              entries, signer)
    except ValueError as exc:
        raise CommandError(f"cannot sign the bootstrap record: {exc}") from None
    _emit(wire, args.out, ctx)
    print(f"signer key {signer.public_key.hex()}; publish at {owners.bootstrap(args.domain)}",
          file=ctx.stderr)
    return 0


# --- joining ----------------------------------------------------------------------------------

def cluster_bootstrap(args, ctx) -> int:
    config = load(args.config)
    if not _HEX_KEY.fullmatch(args.pin):
        raise CommandError("--pin: the zone operator's public key is 64 hex characters")
    server = parse_server(args.resolver)
    if server is None:
        raise CommandError(f"--resolver {args.resolver!r}: expected IP:PORT")
    token = _sync_token(args)
    timeout = parse_duration(args.timeout)
    if timeout is None or timeout <= 0:
        raise CommandError(f"--timeout {args.timeout!r}: give a duration such as 10s")
    reactor = ctx.get_reactor()
    outcome = {"status": 0}

    async def join():
        found = await defer.ensureDeferred(
            find_cluster(reactor, server, args.seed, bytes.fromhex(args.pin), timeout))
        return _member_config(config, found, token)

    def failed(message: str) -> None:
        print(f"dmfdns: {message}", file=ctx.stderr)
        outcome["status"] = 1
        reactor.stop()

    def joined(member_config) -> None:
        try:
            node = make_service(member_config, reactor)
        except STARTUP_ERRORS as exc:
            failed(str(exc))
            return
        try:
            node.startService()
        except STARTUP_ERRORS as exc:
            node.close()
            failed(str(exc))
            return
        reactor.addSystemEventTrigger("before", "shutdown", node.stopService)
        start_logging(ctx.stderr)
        for line in summary(member_config, node.zones, node.dns_addresses("udp")):
            print(f"  {line}", file=ctx.stdout)
        manifest = node.cluster.keeper.current[1]
        print(f"joined cluster {manifest.cluster_name} (manifest seq {manifest.seq}) as "
              f"{member_config.node.node_id}; syncing with "
              f"{', '.join(sorted(node.cluster.anti_entropy.states)) or 'no peers'}",
              file=ctx.stdout)
        ctx.stdout.flush()

    def go():
        running = defer.ensureDeferred(join())
        running.addCallbacks(joined, lambda f: failed(_message(f)))

    reactor.callWhenRunning(go)
    reactor.run()
    return outcome["status"]


def _message(failure) -> str:
    if failure.check(CommandError, DiscoveryError, ReadError, ConfigError):
        return str(failure.value)
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return "cluster discovery timed out"
    return f"cluster discovery failed: {failure.getErrorMessage()}"


def _sync_token(args) -> str:
    if bool(args.sync_token) == bool(args.sync_token_file):
        raise CommandError("give --sync-token or --sync-token-file (one of them)")
    if args.sync_token:
        return args.sync_token
    try:
        lines = pathlib.Path(args.sync_token_file).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CommandError(f"cannot read {args.sync_token_file}: {exc.strerror}") from None
    if not lines or not lines[0].strip():
        raise CommandError(f"{args.sync_token_file} is empty")
    return lines[0].strip()


async def find_cluster(reactor, server, seed: str, pin: bytes, timeout: float):
    """``(Cluster, manifest wire)`` from ``_dmp.<seed>`` through ``server``."""
    pool = ResolverPool([server], DnsClient(reactor, timeout=min(timeout, 3.0)), reactor)
    found = defer.ensureDeferred(discover(pool, seed, pin, int(reactor.seconds())))
    found.addTimeout(timeout, reactor)
    cluster = await found
    for value in await pool.read(owners.cluster(cluster.base)):
        record = cluster_manifest.parse_and_verify(value, cluster.operator_spk,
                                                   now=int(reactor.seconds()),
                                                   expected_cluster_name=cluster.base)
        if record == cluster.manifest:
            return cluster, value
    raise DiscoveryError(f"the manifest at {owners.cluster(cluster.base)} changed while "
                         "it was read; try again")


def _member_config(config, found, token: str):
    """``config`` as a member of the cluster found: its manifest, key and base pinned."""
    cluster, wire = found
    node_id = config.node.node_id
    ids = [node.node_id for node in cluster.manifest.nodes]
    if node_id not in ids:
        raise CommandError(f"node id {node_id!r} is not in the manifest of cluster "
                           f"{cluster.base} (seq {cluster.manifest.seq}; nodes: "
                           f"{', '.join(ids)}); ask the operator to sign one that lists it")
    data_dir = config.node.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = data_dir / MANIFEST_FILE
    manifest_path.write_text(wire + "\n", encoding="ascii")
    member = dataclasses.replace(
        config.cluster, base=cluster.base, operator_key=cluster.operator_spk.hex(),
        operator_key_file=None, manifest_file=manifest_path, sync_token=token,
        sync_token_file=None)
    return dataclasses.replace(config, cluster=member)
