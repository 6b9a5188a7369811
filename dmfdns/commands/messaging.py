"""``dmfdns send``, ``recv``, ``prekeys refresh``, ``contacts ...`` and ``intro ...``.

``recv`` polls once; ``recv --watch`` polls every ``--interval`` seconds (default 60, well
inside the 300 s a default message lives, docs/wire-format.md §9.2) until interrupted, taking
the state lock only while a poll runs so ``send`` can run meanwhile. Every failure is one line
on stderr and exit status 1; a failed poll under ``--watch`` is reported and the next one runs.
"""

import argparse
import datetime
import re
import sys

from twisted.internet import defer, task

from ..client import app, identity_ops, prekeys, receive, rotation, runner, send
from ..client import session as client_session
from ..client import state as client_state
from . import CommandError
from .identity import environment, open_session, with_network

DEFAULT_INTERVAL = 60.0


def register(sub) -> None:
    p = sub.add_parser("send", help="send a message to a pinned contact")
    p.add_argument("address", help="the contact, user@domain")
    p.add_argument("text", help="the message, or - to read standard input")
    p.set_defaults(handler=send_message)

    p = sub.add_parser("recv", help="fetch messages for you (once, or --watch)")
    p.add_argument("--watch", action="store_true", help="keep polling until interrupted")
    p.add_argument("--interval", type=_interval, default=DEFAULT_INTERVAL, metavar="SECONDS",
                   help=f"seconds between polls with --watch (default {DEFAULT_INTERVAL:g})")
    p.add_argument("--polls", type=int, metavar="N",
                   help="with --watch, stop after N polls")
    p.add_argument("--no-rotation-check", action="store_true",
                   help="do not look for contacts' key rotations and revocations")
    p.set_defaults(handler=receive_messages)

    prekeys_parser = sub.add_parser("prekeys", help="one-time prekeys (forward secrecy)")
    actions = prekeys_parser.add_subparsers(dest="prekeys_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("refresh", help="top the published prekey pool up to --count")
    p.add_argument("--count", type=int, default=prekeys.DEFAULT_POOL_SIZE,
                   help=f"live prekeys to keep published (default {prekeys.DEFAULT_POOL_SIZE})")
    p.add_argument("--ttl", type=int, default=prekeys.DEFAULT_PREKEY_TTL,
                   help="lifetime of new prekeys in seconds (default 86400)")
    p.set_defaults(handler=refresh_prekeys)

    contacts = sub.add_parser("contacts", help="pinned contacts and blocks")
    actions = contacts.add_subparsers(dest="contacts_command", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", help="list contacts with fingerprints").set_defaults(
        handler=list_contacts)
    p = actions.add_parser("add", help="fetch user@domain and pin it (or pin given keys)")
    p.add_argument("address", help="user@domain")
    p.add_argument("--x25519", type=_hex32, metavar="HEX", help="pin this key (with --ed25519)")
    p.add_argument("--ed25519", type=_hex32, metavar="HEX", help="pin this signing key")
    p.set_defaults(handler=add_contact)
    for name, blocked in (("block", True), ("unblock", False)):
        p = actions.add_parser(name, help=f"{name} a contact (user@domain) or a signing key "
                                          "(64 hex)")
        p.add_argument("who", help="user@domain or an Ed25519 key in hex")
        p.set_defaults(handler=set_blocked, blocked=blocked)

    intro = sub.add_parser("intro", help="messages from senders you have not pinned")
    actions = intro.add_subparsers(dest="intro_command", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", help="show the intro queue").set_defaults(handler=list_intros)
    for name, handler, text in (("accept", accept_intro, "pin its sender and keep reading"),
                                ("drop", drop_intro, "forget it")):
        p = actions.add_parser(name, help=f"{text} (NUMBER from 'intro list')")
        p.add_argument("number", type=int)
        p.set_defaults(handler=handler)


def _interval(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 86400:
        raise argparse.ArgumentTypeError("--interval is 1..86400 seconds")
    return value


def _hex32(text):
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text.strip()):
        raise argparse.ArgumentTypeError("expected 64 hex characters (32 bytes)")
    return bytes.fromhex(text.strip())


def _when(ts: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(ts)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


# --- send -------------------------------------------------------------------------------

def send_message(args, ctx) -> int:
    text = args.text
    if text == "-":
        text = sys.stdin.read()
        text = text[:-1] if text.endswith("\n") else text   # the newline ending the input
    session = open_session()
    contact = session.state.contact(args.address.strip().rstrip("."))
    if contact is None:
        session.close()
        raise CommandError(f"{args.address} is not a contact; pin it first with "
                           f"'dmfdns identity fetch {args.address} --add'")

    async def work(net, now):
        app.require_writer(net)
        result = await rotation.follow(net, contact, now)
        if result.status == rotation.REVOKED:
            raise send.SendError(f"{contact.address} revoked its key; not sending")
        return await send.send_text(net, session.profile, session.state, contact,
                                    text.encode("utf-8"), now)
    sent = with_network(ctx, session, work)
    for index, item in enumerate(sent):
        part = f" (part {index + 1}/{len(sent)})" if len(sent) > 1 else ""
        key = f"prekey {item.prekey_id}" if item.prekey_id else "long-term key"
        print(f"sent {item.msg_id.hex()} to {contact.address}{part}: {item.data_chunks} of "
              f"{item.total_chunks} chunks needed, sealed to its {key}", file=ctx.stdout)
    return 0


# --- recv -------------------------------------------------------------------------------

def receive_messages(args, ctx) -> int:
    follow = not args.no_rotation_check
    if not args.watch:
        _print_report(ctx, _poll_once(ctx, follow))
        return 0
    return _watch(ctx, args.interval, args.polls, follow)


def _poll_once(ctx, follow: bool):
    session = open_session()

    async def work(net, now):
        return await receive.receive(net, session.profile, session.state, now,
                                     follow_rotations=follow)
    return with_network(ctx, session, work)


def _watch(ctx, interval: float, polls: int | None, follow: bool) -> int:
    env = environment()
    try:
        client_state.UserDir(env.home).load_profile()
        passphrase = client_session.read_passphrase(env)
        client_session.Session(env.home, passphrase).close()   # a wrong passphrase fails now
    except client_state.StateError as exc:
        raise CommandError(str(exc)) from None

    async def job(reactor):
        done = 0

        async def tick():
            nonlocal done
            try:
                report = await _poll(reactor, env.home, passphrase, follow)
            except Exception as exc:  # a bad poll must not end the watch
                print(f"dmfdns: poll failed: {exc or type(exc).__name__}", file=ctx.stderr)
            else:
                _print_report(ctx, report)
            ctx.stdout.flush()
            done += 1
            if polls is not None and done >= polls:
                loop.stop()

        loop = task.LoopingCall(lambda: defer.ensureDeferred(tick()))
        loop.clock = reactor
        print(f"watching for messages every {interval:g} s (Ctrl-C to stop)", file=ctx.stderr)
        await loop.start(interval, now=True)
    try:
        runner.run(ctx.get_reactor(), job)
    except runner.Interrupted:
        pass   # SIGINT or SIGTERM: the watch is over; every finished poll was saved
    return 0


async def _poll(reactor, home, passphrase, follow):
    session = client_session.Session(home, passphrase)
    try:
        now = int(reactor.seconds())
        net = await app.connect(reactor, session.profile, now)
        try:
            return await receive.receive(net, session.profile, session.state, now,
                                         follow_rotations=follow)
        finally:
            await net.finish()
    finally:
        session.save()
        session.close()


def _print_report(ctx, report) -> None:
    for note in report.notes:
        print(f"note: {note}", file=ctx.stderr)
    for message in report.delivered:
        who = message.contact
        if message.sender and message.sender != message.contact:
            who = f"{message.contact} (signed as {message.sender})"
        print(f"[{_when(message.ts)}] {who}: {_text(message.body)}", file=ctx.stdout)
    for message in report.intro:
        who = message.sender or f"unverified sender {message.sender_spk.hex()[:16]}"
        print(f"[{_when(message.ts)}] intro from {who} (not pinned; see 'dmfdns intro "
              "list')", file=ctx.stdout)
    if not report.delivered and not report.intro:
        print("no new messages", file=ctx.stderr)


# --- prekeys ----------------------------------------------------------------------------

def refresh_prekeys(args, ctx) -> int:
    if not 1 <= args.count <= 60:
        raise CommandError("--count is 1..60 (a node keeps at most 64 values per name)")
    if not 60 <= args.ttl <= 86400:
        raise CommandError("--ttl is 60..86400 seconds")
    session = open_session()

    async def work(net, now):
        app.require_writer(net)
        return await prekeys.refresh(net, session.profile, session.state, args.count, now,
                                     args.ttl)
    fresh = with_network(ctx, session, work)
    owner = prekeys.pool_owner(session.profile.username, session.profile.zone)
    print(f"{len(session.state.prekeys)} prekeys published at {owner} ({len(fresh)} new)",
          file=ctx.stdout)
    return 0


# --- contacts ---------------------------------------------------------------------------

def list_contacts(args, ctx) -> int:
    with open_session() as session:
        contacts = list(session.state.contacts)
        blocked_keys = list(session.state.blocked_keys)
    if not contacts and not blocked_keys:
        print("no contacts; add one with 'dmfdns contacts add user@domain'", file=ctx.stderr)
    for contact in contacts:
        flags = [f for f, on in (("blocked", contact.blocked), ("revoked", contact.revoked))
                 if on]
        suffix = f" [{', '.join(flags)}]" if flags else ""
        print(f"{contact.address}  {identity_ops.contact_fingerprint(contact)}{suffix}",
              file=ctx.stdout)
    for key in blocked_keys:
        print(f"blocked key {key.hex()}", file=ctx.stdout)
    return 0


def add_contact(args, ctx) -> int:
    try:
        user, host = identity_ops.split_address(args.address)
    except identity_ops.IdentityError as exc:
        raise CommandError(str(exc)) from None
    if bool(args.x25519) != bool(args.ed25519):
        raise CommandError("--x25519 and --ed25519 go together")
    if args.x25519:
        with open_session() as session:
            contact = session.state.contact(f"{user}@{host}")
            if contact is None:
                contact = client_state.Contact(user, host, args.x25519, args.ed25519,
                                               added=int(ctx.now))
                session.state.contacts.append(contact)
            contact.x25519, contact.ed25519, contact.revoked = args.x25519, args.ed25519, False
            session.save()
        print(f"pinned {contact.address}  {identity_ops.contact_fingerprint(contact)}",
              file=ctx.stdout)
        return 0
    session = open_session()

    async def work(net, now):
        found = await identity_ops.find_identity(net, f"{user}@{host}", now)
        if found is None:
            raise identity_ops.IdentityError(f"no verifiable identity for {user}@{host}")
        return identity_ops.pin(session.state, found, now)
    contact = with_network(ctx, session, work)
    print(f"pinned {contact.address}  {identity_ops.contact_fingerprint(contact)}",
          file=ctx.stdout)
    return 0


def set_blocked(args, ctx) -> int:
    who = args.who.strip()
    with open_session() as session:
        state = session.state
        if re.fullmatch(r"[0-9a-fA-F]{64}", who):
            key = bytes.fromhex(who)
            if args.blocked and key not in state.blocked_keys:
                state.blocked_keys.append(key)
            if not args.blocked:
                state.blocked_keys = [k for k in state.blocked_keys if k != key]
        else:
            contact = state.contact(who.rstrip("."))
            if contact is None:
                raise CommandError(f"{who} is not a contact (block a key with its 64 hex "
                                   "characters)")
            contact.blocked = args.blocked
        session.save()
    print(f"{'blocked' if args.blocked else 'unblocked'} {who}", file=ctx.stdout)
    return 0


# --- intro queue ------------------------------------------------------------------------

def list_intros(args, ctx) -> int:
    with open_session() as session:
        intros = list(session.state.intro)
    if not intros:
        print("the intro queue is empty", file=ctx.stderr)
    for number, item in enumerate(intros, 1):
        who = item.sender or f"unverified key {item.sender_spk.hex()[:16]}"
        print(f"{number}. [{_when(item.ts)}] from {who} via {item.zone}: {_text(item.body)}",
              file=ctx.stdout)
    return 0


def _intro_at(session, number):
    if not 1 <= number <= len(session.state.intro):
        raise CommandError(f"no intro number {number}; see 'dmfdns intro list'")
    return session.state.intro[number - 1]


def drop_intro(args, ctx) -> int:
    with open_session() as session:
        item = _intro_at(session, args.number)
        session.state.intro.remove(item)
        session.save()
    print(f"dropped intro {args.number}", file=ctx.stdout)
    return 0


def accept_intro(args, ctx) -> int:
    session = open_session()
    try:
        item = _intro_at(session, args.number)
    except CommandError:
        session.close()
        raise
    if not item.sender:
        session.close()
        raise CommandError("its sender is unverified; pin it yourself with 'dmfdns contacts "
                           "add user@domain --x25519 ... --ed25519 ...' if you know who it is")

    async def work(net, now):
        found = await identity_ops.find_identity(net, item.sender, now,
                                                 expected_spk=item.sender_spk)
        if found is None:
            raise identity_ops.IdentityError(f"{item.sender} no longer publishes the key "
                                             "that signed this message")
        contact = identity_ops.pin(session.state, found, now)
        session.state.intro.remove(item)
        return contact
    contact = with_network(ctx, session, work)
    print(f"pinned {contact.address}  {identity_ops.contact_fingerprint(contact)}; its "
          "message:", file=ctx.stdout)
    print(f"[{_when(item.ts)}] {contact.address}: {_text(item.body)}", file=ctx.stdout)
    return 0
