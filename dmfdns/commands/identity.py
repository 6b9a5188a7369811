"""``dmfdns identity init|publish|fetch|show|rotate|revoke``: the user's own identity.

State lives in ``$DMFDNS_HOME`` (see ``dmfdns.client.state``); the passphrase comes from
``$DMFDNS_PASSPHRASE``, ``$DMFDNS_PASSPHRASE_FILE`` or a prompt. Every failure is one line on
stderr and exit status 1.
"""

import argparse
import re

from .. import config
from ..client import app, discovery, identity_ops, network, rotation, runner
from ..client import session as client_session
from ..client import state as client_state
from ..client.dnsquery import parse_server
from ..proto import names, revocation
from ..proto.keys import UserKeys, passphrase_to_x25519
from . import CommandError

DEFAULT_NODE = "http://127.0.0.1:8053,127.0.0.1:5353"
REASONS = {"compromise": revocation.REASON_COMPROMISE, "routine": revocation.REASON_ROUTINE,
           "lost": revocation.REASON_LOST_KEY, "other": revocation.REASON_OTHER}


def register(sub) -> None:
    parser = sub.add_parser("identity", help="your identity: create, publish, show, rotate, "
                                             "revoke; fetch someone else's")
    actions = parser.add_subparsers(dest="identity_command", metavar="ACTION")
    actions.required = True

    init = actions.add_parser("init", help="create an identity in $DMFDNS_HOME")
    init.add_argument("username", help="your username (1..64 bytes of UTF-8)")
    init.add_argument("--zone", default="mesh.test",
                      help="the mesh zone you publish in (default: mesh.test)")
    init.add_argument("--identity-domain", metavar="DOMAIN",
                      help="publish zone-anchored at dmp.DOMAIN (address user@DOMAIN)")
    init.add_argument("--node", action="append", metavar="URL[,IP:PORT]", type=_node,
                      help="a node's HTTP endpoint and DNS address (repeat for a cluster; "
                           f"default {DEFAULT_NODE})")
    init.add_argument("--resolver", action="append", metavar="IP[:PORT]", type=_server,
                      help="a recursive resolver for names outside the zone (repeatable)")
    init.add_argument("--token", help="bearer token for writes to the nodes")
    init.add_argument("--salt", type=_hex32, metavar="HEX",
                      help="the 32-byte KDF salt (64 hex) of an existing identity, e.g. a "
                           "dnsmesh kdf_salt; default: a new random salt")
    init.add_argument("--cluster", metavar="BASE", type=_dns_name,
                      help="pin the cluster at cluster.BASE (needs --operator-key)")
    init.add_argument("--operator-key", type=_hex32, metavar="HEX",
                      help="the cluster operator's Ed25519 public key")
    init.add_argument("--bootstrap", metavar="DOMAIN", type=_dns_name,
                      help="find the cluster from _dmp.DOMAIN (needs --bootstrap-key)")
    init.add_argument("--bootstrap-key", type=_hex32, metavar="HEX",
                      help="the zone operator's Ed25519 public key for --bootstrap")
    init.add_argument("--ttl", type=int, default=client_state.DEFAULT_MESSAGE_TTL,
                      help="lifetime of sent messages in seconds (default 300)")
    init.set_defaults(handler=init_identity)

    publish = actions.add_parser("publish", help="publish your identity record (and your "
                                                 "rotation records); repeat daily")
    publish.set_defaults(handler=publish_identity)

    fetch = actions.add_parser("fetch", help="look up user@domain and show its fingerprint")
    fetch.add_argument("address", help="user@domain")
    fetch.add_argument("--add", action="store_true", help="pin it as a contact")
    fetch.set_defaults(handler=fetch_identity)

    show = actions.add_parser("show", help="who you are: address, fingerprint, keys, nodes")
    show.set_defaults(handler=show_identity)

    rotate = actions.add_parser("rotate", help="move your identity to a fresh key")
    rotate.set_defaults(handler=rotate_identity)

    revoke = actions.add_parser("revoke", help="revoke your current key for good")
    revoke.add_argument("--reason", choices=sorted(REASONS), default="compromise")
    revoke.set_defaults(handler=revoke_identity)


# --- argument types ---------------------------------------------------------------------

def _node(text):
    try:
        node = app.parse_node(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if node.dns and parse_server(node.dns) is None:
        raise argparse.ArgumentTypeError(f"{node.dns!r}: the DNS address is IP:PORT")
    return node


def _server(text):
    if parse_server(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address with optional :port")
    return text


def _hex32(text):
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text.strip()):
        raise argparse.ArgumentTypeError("expected 64 hex characters (32 bytes)")
    return bytes.fromhex(text.strip())


def _dns_name(text):
    name = names.ldh_name(text)
    if name is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a DNS name")
    return name.lower()


# --- shared with the messaging commands -------------------------------------------------

def environment():
    return config.client_environment()


def open_session(prompt=None) -> client_session.Session:
    env = environment()
    try:
        client_state.UserDir(env.home).load_profile()
        return client_session.Session(env.home, client_session.read_passphrase(env, prompt))
    except client_state.StateError as exc:
        raise CommandError(str(exc)) from None


def run_job(ctx, job):
    """Run ``job(reactor)`` on the command's reactor; client errors become one line."""
    try:
        return runner.run(ctx.get_reactor(), job)
    except app.CLIENT_ERRORS as exc:
        raise CommandError(str(exc)) from None


def with_network(ctx, session, work):
    """Run ``work(net, now)`` with a connected network, then save the session."""
    async def job(reactor):
        now = int(reactor.seconds())
        net = await app.connect(reactor, session.profile, now)
        try:
            for note in net.notes:
                print(f"note: {note}", file=ctx.stderr)
            return await work(net, now)
        finally:
            await net.finish()
    try:
        result = run_job(ctx, job)
    finally:
        session.save()
        session.close()
    return result


# --- handlers ---------------------------------------------------------------------------

def init_identity(args, ctx) -> int:
    env = environment()
    home = client_state.UserDir(env.home)
    if home.exists():
        raise CommandError(f"{env.home} already holds an identity; set DMFDNS_HOME to "
                           "another directory")
    if bool(args.cluster) != bool(args.operator_key):
        raise CommandError("--cluster and --operator-key go together")
    if bool(args.bootstrap) != bool(args.bootstrap_key):
        raise CommandError("--bootstrap and --bootstrap-key go together")
    if not 1 <= len(args.username.encode("utf-8")) <= 64 or "@" in args.username:
        raise CommandError("a username is 1..64 bytes of UTF-8 without '@'")
    if not 60 <= args.ttl <= 86400:
        raise CommandError("--ttl is 60..86400 seconds")
    zone = _dns_name_or_fail(args.zone, "--zone")
    identity_domain = (_dns_name_or_fail(args.identity_domain, "--identity-domain")
                       if args.identity_domain else None)
    try:
        passphrase = client_session.read_passphrase(env, None, confirm=True)
    except client_state.StateError as exc:
        raise CommandError(str(exc)) from None
    kdf_salt = args.salt or client_state.new_salt()
    keys = UserKeys.from_x25519_private(passphrase_to_x25519(passphrase, kdf_salt))
    profile = client_state.Profile(
        username=args.username, zone=zone, kdf_salt=kdf_salt,
        state_salt=client_state.new_salt(), x25519_public=keys.x25519_public,
        ed25519_public=keys.ed25519_public, identity_domain=identity_domain,
        nodes=args.node or [_node(DEFAULT_NODE)], resolvers=args.resolver or [],
        token=args.token, message_ttl=args.ttl, cluster_base=args.cluster,
        cluster_operator=args.operator_key)
    if args.bootstrap:
        _discover_into(ctx, profile, args.bootstrap, args.bootstrap_key)
    secrets = client_state.Secrets(x25519_private=keys.x25519_private)
    try:
        home.create(profile, secrets, client_state.state_key(passphrase, profile.state_salt))
    except client_state.StateError as exc:
        raise CommandError(str(exc)) from None
    print(f"created {profile.address} in {env.home}", file=ctx.stdout)
    print(f"fingerprint: {identity_ops.contact_fingerprint(_self_contact(profile))}",
          file=ctx.stdout)
    print("next: 'dmfdns identity publish' and 'dmfdns prekeys refresh'", file=ctx.stdout)
    return 0


def _dns_name_or_fail(text, option):
    name = names.ldh_name(text)
    if name is None:
        raise CommandError(f"{option} {text!r} is not a DNS name")
    return name.lower()


def _discover_into(ctx, profile, domain, key) -> None:
    async def job(reactor):
        net = network.build(reactor, profile)
        try:
            return await discovery.discover(net.reader, domain, key, int(reactor.seconds()))
        finally:
            await net.finish()
    cluster = run_job(ctx, job)
    profile.nodes = cluster.nodes
    profile.cluster_base, profile.cluster_operator = cluster.base, cluster.operator_spk
    profile.cluster_seq = cluster.manifest.seq
    print(f"cluster {cluster.base} (manifest seq {cluster.manifest.seq}): "
          f"{len(cluster.nodes)} nodes", file=ctx.stdout)


def _self_contact(profile):
    return client_state.Contact(profile.username, profile.home_domain, profile.x25519_public,
                                profile.ed25519_public)


def publish_identity(args, ctx) -> int:
    session = open_session()

    async def work(net, now):
        app.require_writer(net)
        if session.state.revoked:
            raise identity_ops.IdentityError("this identity's key is revoked; nothing to "
                                             "publish")
        owner = await identity_ops.publish_identity(net, session.profile, session.state.keys,
                                                    now)
        extra = await rotation.republish(net, session.profile, session.state)
        return owner, extra
    owner, extra = with_network(ctx, session, work)
    print(f"published {session.profile.address} at {owner}", file=ctx.stdout)
    if extra:
        print(f"republished {extra} rotation/revocation record(s)", file=ctx.stdout)
    return 0


def fetch_identity(args, ctx) -> int:
    try:
        identity_ops.split_address(args.address)
    except identity_ops.IdentityError as exc:
        raise CommandError(str(exc)) from None
    session = open_session()

    async def work(net, now):
        found = await identity_ops.find_identity(net, args.address, now)
        if found is None:
            raise identity_ops.IdentityError(f"no verifiable identity for {args.address}")
        contact = identity_ops.pin(session.state, found, now) if args.add else None
        return found, contact
    found, contact = with_network(ctx, session, work)
    record = found.record
    print(f"{found.user}@{found.host} at {found.owner}", file=ctx.stdout)
    print(f"  fingerprint: {found.fingerprint}", file=ctx.stdout)
    print(f"  x25519:  {record.x25519_pk.hex()}", file=ctx.stdout)
    print(f"  ed25519: {record.ed25519_spk.hex()}", file=ctx.stdout)
    print(f"  versions: {', '.join(map(str, record.versions))}", file=ctx.stdout)
    if contact is not None:
        print(f"pinned {contact.address}", file=ctx.stdout)
    return 0


def show_identity(args, ctx) -> int:
    env = environment()
    try:
        profile = client_state.UserDir(env.home).load_profile()
    except client_state.StateError as exc:
        raise CommandError(str(exc)) from None
    out = ctx.stdout
    print(f"address:     {profile.address}", file=out)
    print(f"home:        {env.home}", file=out)
    print(f"identity at: {identity_ops.own_identity_owner(profile)}", file=out)
    print(f"fingerprint: {identity_ops.contact_fingerprint(_self_contact(profile))}", file=out)
    print(f"x25519:      {profile.x25519_public.hex()}", file=out)
    print(f"ed25519:     {profile.ed25519_public.hex()}", file=out)
    for node in profile.nodes:
        print(f"node:        {node.http}" + (f" (DNS {node.dns})" if node.dns else ""),
              file=out)
    for resolver in profile.resolvers:
        print(f"resolver:    {resolver}", file=out)
    if profile.cluster_base:
        print(f"cluster:     {profile.cluster_base} (manifest seq {profile.cluster_seq})",
              file=out)
    return 0


def rotate_identity(args, ctx) -> int:
    session = open_session()

    async def work(net, now):
        app.require_writer(net)
        if session.state.revoked:
            raise identity_ops.IdentityError("this identity's key is revoked; create a new "
                                             "identity instead")
        return await rotation.rotate(net, session.profile, session.state, now)
    with_network(ctx, session, work)
    print(f"rotated {session.profile.address} to a new key; fingerprint "
          f"{identity_ops.contact_fingerprint(_self_contact(session.profile))}", file=ctx.stdout)
    print("run 'dmfdns prekeys refresh' to publish prekeys signed by the new key",
          file=ctx.stdout)
    return 0


def revoke_identity(args, ctx) -> int:
    session = open_session()

    async def work(net, now):
        app.require_writer(net)
        return await rotation.revoke(net, session.profile, session.state, now,
                                     REASONS[args.reason])
    with_network(ctx, session, work)
    print(f"revoked the key of {session.profile.address} ({args.reason}); contacts that "
          "check will refuse it from now on", file=ctx.stdout)
    return 0
