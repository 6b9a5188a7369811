"""``dmfdns token issue|list|revoke``: per-user bearer tokens for ``multi-tenant`` auth.

Tokens live hashed in ``<data_dir>/tokens.json`` (``dmfdns.http.tokens``); a running node
re-reads the file when it changes, so these commands work while the node serves. ``issue``
prints the token once, on stdout; nobody can print it again.
"""

import datetime

from ..config import parse_duration
from ..http.auth import MULTI_TENANT
from ..http.tokens import DEFAULT_BURST, DEFAULT_RATE, TokenFile, TokenFileError
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

    for action in (issue, listing, revoke):
        action.add_argument("--config", metavar="FILE",
                            help="node configuration (TOML); default: the embedded one")


def _tokens(args, ctx) -> TokenFile:
    config = load(args.config)
    if config.http.auth_mode != MULTI_TENANT:
        print(f"dmfdns: note: the node's auth_mode is \"{config.http.auth_mode}\"; user "
              "tokens take effect only with auth_mode = \"multi-tenant\"", file=ctx.stderr)
    return TokenFile(config.node.data_dir)


def issue_token(args, ctx) -> int:
    lifetime = parse_duration(args.expires)
    if lifetime is None or lifetime < 0:
        raise CommandError(f"--expires: not a duration: {args.expires!r}")
    if args.rate <= 0 or args.burst < 1:
        raise CommandError("--rate must be above 0 and --burst at least 1")
    tokens = _tokens(args, ctx)
    try:
        token = tokens.issue(args.subject, now=ctx.now,
                             expires_at=ctx.now + lifetime if lifetime else 0,
                             note=args.note, rate_per_sec=args.rate, rate_burst=args.burst)
    except TokenFileError as exc:
        raise CommandError(str(exc)) from None
    print(token, file=ctx.stdout)
    print("dmfdns: keep this token now: only its hash is stored", file=ctx.stderr)
    return 0


def list_tokens(args, ctx) -> int:
    try:
        records = _tokens(args, ctx).records()
    except TokenFileError as exc:
        raise CommandError(str(exc)) from None
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
    try:
        revoked = _tokens(args, ctx).revoke(args.selector, now=ctx.now)
    except TokenFileError as exc:
        raise CommandError(str(exc)) from None
    if not revoked:
        raise CommandError(f"no live token matches {args.selector!r}")
    for record in revoked:
        print(f"revoked {record.hash[:16]} ({record.subject})", file=ctx.stdout)
    return 0


def _when(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
