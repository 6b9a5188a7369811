"""``dmfdns register``: self-service registration at a public node, for the user's client.

Without ``--tsig`` the node issues a bearer token, kept in the profile and sent with every
HTTP write. With ``--tsig`` it mints a TSIG key: from then on the client writes as signed
DNS UPDATEs to the node's DNS endpoint (``--dns``, default: the first node's), the way a
``dnsmesh tsig register`` user does.
"""

from ..client import registration
from ..client.dnsquery import parse_server
from ..outbound.client import HttpClient
from . import CommandError
from .identity import open_session, run_job


def register(sub) -> None:
    p = sub.add_parser("register", help="register this user at a public node (a token, or "
                                        "a TSIG key with --tsig)")
    p.add_argument("node", metavar="URL", help="the node's HTTP API, e.g. https://dmp.example")
    p.add_argument("--tsig", action="store_true",
                   help="get a TSIG key and write over DNS UPDATE instead of a token")
    p.add_argument("--dns", metavar="HOST:PORT",
                   help="the node's DNS endpoint for UPDATEs (default: the first node's)")
    p.add_argument("--subject", help="user@domain to register (default: your address)")
    p.set_defaults(handler=register_user)


def register_user(args, ctx) -> int:
    session = open_session()
    profile = session.profile
    server = args.dns or next((n.dns for n in profile.nodes if n.dns), None)
    if args.tsig and (server is None or parse_server(server) is None):
        session.close()
        raise CommandError("--tsig needs the node's DNS endpoint as an IP:port (--dns)")
    subject = args.subject or profile.address

    async def job(reactor):
        http = HttpClient(reactor)
        try:
            return await registration.register(http, args.node, session.state.keys, subject,
                                               tsig=args.tsig)
        finally:
            http.close()
    try:
        try:
            answer = run_job(ctx, job)
        except registration.RegistrationFailed as exc:
            raise CommandError(str(exc)) from None
        _keep(profile, answer, args.tsig, server)
        session.save()
    finally:
        session.close()
    if args.tsig:
        print(f"registered {answer.get('subject')}: TSIG key {answer.get('tsig_key_name')} "
              f"for zone {answer.get('zone')}; writes now go as DNS UPDATE to {server}",
              file=ctx.stdout)
        for suffix in answer.get("allowed_suffixes", []):
            print(f"  scope: {suffix}", file=ctx.stdout)
    else:
        print(f"registered {answer.get('subject')}: token kept in the profile "
              f"(expires {answer.get('expires_at')})", file=ctx.stdout)
    return 0


def _keep(profile, answer: dict, tsig: bool, server) -> None:
    try:
        if tsig:
            profile.tsig_key_name = str(answer["tsig_key_name"])
            profile.tsig_secret = bytes.fromhex(answer["tsig_secret_hex"]).hex()
            profile.tsig_algorithm = str(answer.get("tsig_algorithm") or "hmac-sha256")
            profile.tsig_zone = str(answer["zone"])
            profile.tsig_server = server
        else:
            profile.token = str(answer["token"])
    except (KeyError, TypeError, ValueError):
        raise CommandError(f"the node's answer lacks the credential: {sorted(answer)}") \
            from None
