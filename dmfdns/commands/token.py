"""``dmfdns token issue|list|revoke|audit`` and ``dmfdns tsig list|revoke``: per-user credentials
for ``multi-tenant`` auth and DNS UPDATE.

Credentials live in the node's LMDB store (``dmfdns.store.credentials``: tokens hashed, TSIG
keys, a bounded audit trail). LMDB lets this process write while the node serves, and the
node sees each change at its next lookup, so these commands work on a running node.
``token issue`` prints the token once, on stdout; nobody can print it again.
"""

import datetime

from ..config import parse_duration
from ..http.auth import MULTI_TENANT
from ..node_store import open_store
from ..store.api import StoreError
from ..store.credentials import (DEFAULT_BURST, DEFAULT_RATE, CredentialError, Credentials,
                                 import_token_file)
from . import CommandError
from .serve import load


def register(sub) -> None:
    token = sub.add_parser("token", help="issue, list or revoke per-user write tokens")
    actions = token.add_subparsers(dest="token_command", metavar="ACTION")
    actions.required = True

    issue = actions.add_parser("issue", help="issue a token for a user and print it once")
    issue.add_argument("subject", metavar="SUBJECT",
                       help="the user: 'alice@mesh.test' (or 'alice' without an anchored "
                            "dmp.alice.<domain> identity)")
    issue.add_argument("--expires", metavar="DURATION", default="90d",
                       help="lifetime, e.g. 30d or 12h; 0 for never (default 90d)")
    issue.add_argument("--note", default="", help="free text shown by 'token list'")
    issue.add_argument("--rate", type=float, default=DEFAULT_RATE, metavar="PER_SECOND",
                       help=f"requests per second for this token (default {DEFAULT_RATE:g})")
    issue.add_argument("--burst", type=int, default=DEFAULT_BURST, metavar="N",
                       help=f"burst of requests for this token (default {DEFAULT_BURST})")
    issue.set_defaults(handler=issue_token)

    listing = actions.add_parser("list", help="list tokens (hash prefixes, never tokens)")
    listing.add_argument("--all", action="store_true",
                         help="include revoked and expired tokens")
    listing.set_defaults(handler=list_tokens)

    revoke = actions.add_parser("revoke", help="revoke a token")
    revoke.add_argument("selector", metavar="TOKEN_OR_HASH",
                        help="the token itself, or at least 8 hex digits of its hash "
                             "(as 'token list' shows)")
    revoke.set_defaults(handler=revoke_token)

    audit = actions.add_parser("audit", help="the last credential events (registrations, "
                                             "issues, revocations), oldest first")
    audit.add_argument("--last", type=int, default=50, metavar="N",
                       help="how many events (default 50; the store keeps 10,000)")
    audit.set_defaults(handler=show_audit)

    for action in (issue, listing, revoke, audit):
        action.add_argument("--config", metavar="FILE",
                            help="node configuration (TOML); default: the embedded one")
    register_tsig(sub)


def _credentials(args, ctx, *, write: bool = True):
    """(Credentials, store) of the configured node; the caller closes the store."""
    config = load(args.config)
    if config.http.auth_mode != MULTI_TENANT:
        print(f"dmfdns: note: the node's auth_mode is \"{config.http.auth_mode}\"; user "
              "tokens take effect only with auth_mode = \"multi-tenant\"", file=ctx.stderr)
    try:
        store = open_store(config, readonly=not write)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    credentials = Credentials(store)
    if write:
        try:
            import_token_file(credentials, config.node.data_dir, now=ctx.now)
        except CredentialError as exc:
            store.close()
            raise CommandError(str(exc)) from None
    return credentials, store


def _run(args, ctx, action, *, write: bool = True):
    credentials, store = _credentials(args, ctx, write=write)
    try:
        return action(credentials)
    except (CredentialError, StoreError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()


def issue_token(args, ctx) -> int:
    lifetime = parse_duration(args.expires)
    if lifetime is None or lifetime < 0:
        raise CommandError(f"--expires: not a duration: {args.expires!r}")
    if args.rate <= 0 or args.burst < 1:
        raise CommandError("--rate must be above 0 and --burst at least 1")
    token = _run(args, ctx, lambda credentials: credentials.issue_token(
        args.subject, now=ctx.now, expires_at=ctx.now + lifetime if lifetime else 0,
        note=args.note, rate_per_sec=args.rate, rate_burst=args.burst))
    print(token, file=ctx.stdout)
    print("dmfdns: keep this token now: only its hash is stored", file=ctx.stderr)
    return 0


def list_tokens(args, ctx) -> int:
    records = _run(args, ctx, lambda credentials: credentials.tokens())
    shown = [r for r in records if args.all or r.live(ctx.now)]
    print(f"{'HASH':<16}  {'SUBJECT':<30}  {'ISSUED':<20}  {'EXPIRES':<20}  STATE  NOTE",
          file=ctx.stdout)
    for record in sorted(shown, key=lambda r: r.issued_at):
        state = ("revoked" if record.revoked_at is not None
                 else "live" if record.live(ctx.now) else "expired")
        expires = _when(record.expires_at) if record.expires_at else "never"
        print(f"{record.hash[:16]:<16}  {record.subject:<30}  {_when(record.issued_at):<20}  "
              f"{expires:<20}  {state:<5}  {record.note}", file=ctx.stdout)
    return 0


def revoke_token(args, ctx) -> int:
    revoked = _run(args, ctx, lambda c: c.revoke_tokens(args.selector, now=ctx.now))
    if not revoked:
        raise CommandError(f"no live token matches {args.selector!r}")
    for record in revoked:
        print(f"revoked {record.hash[:16]} ({record.subject})", file=ctx.stdout)
    return 0


def _when(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


# --- TSIG keys --------------------------------------------------------------------------------

def register_tsig(sub) -> None:
    tsig = sub.add_parser("tsig", help="list or revoke the TSIG keys users registered")
    actions = tsig.add_subparsers(dest="tsig_command", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="list TSIG keys (names and scopes, no secrets)")
    listing.add_argument("--all", action="store_true",
                         help="include revoked and expired keys")
    listing.set_defaults(handler=list_tsig)
    revoke = actions.add_parser("revoke", help="revoke a TSIG key, or every key of a user")
    revoke.add_argument("selector", metavar="KEY_OR_SUBJECT",
                        help="a key name as 'tsig list' shows it, or a subject user@domain")
    revoke.set_defaults(handler=revoke_tsig)
    for action in (listing, revoke):
        action.add_argument("--config", metavar="FILE",
                            help="node configuration (TOML); default: the embedded one")


def list_tsig(args, ctx) -> int:
    keys = _run(args, ctx, lambda credentials: credentials.tsig_keys())
    print(f"{'KEY NAME':<48}  {'SUBJECT':<28}  {'CREATED':<20}  {'EXPIRES':<20}  STATE  "
          "SCOPE", file=ctx.stdout)
    for key in keys:
        if not (args.all or key.live(ctx.now)):
            continue
        state = ("revoked" if key.revoked_at is not None
                 else "live" if key.live(ctx.now) else "expired")
        expires = _when(key.expires_at) if key.expires_at else "never"
        print(f"{key.name + '.':<48}  {key.subject:<28}  {_when(key.created_at):<20}  "
              f"{expires:<20}  {state:<5}  {' '.join(key.suffixes)}", file=ctx.stdout)
    return 0


def revoke_tsig(args, ctx) -> int:
    revoked = _run(args, ctx, lambda c: c.revoke_tsig(args.selector, now=ctx.now))
    if not revoked:
        raise CommandError(f"no live TSIG key matches {args.selector!r}")
    for key in revoked:
        print(f"revoked {key.name}. ({key.subject})", file=ctx.stdout)
    return 0


def show_audit(args, ctx) -> int:
    if args.last < 1:
        raise CommandError("--last must be at least 1")
    entries = _run(args, ctx, lambda credentials: credentials.audit(args.last))
    for entry in entries:
        print(f"{_when(entry.ts)}  {entry.event:<16}  {entry.subject or '-':<28}  "
              f"{entry.detail}" + (f"  from {entry.remote}" if entry.remote else ""),
              file=ctx.stdout)
    return 0
