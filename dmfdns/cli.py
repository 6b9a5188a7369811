"""The ``dmfdns`` command line: argparse subcommands that call package functions.

Each module in ``dmfdns.commands`` adds its subcommands with ``register(subparsers)``; a
handler takes ``(args, ctx)`` and returns an exit status. Failures are one line on stderr:
exit 1 for a refused operation or invalid input, 2 for usage errors.
"""

import argparse
import sys
from typing import Callable, TextIO

from . import __version__
from .commands import CommandError, Context
from .commands import backup as backup_commands
from .commands import cluster as cluster_commands
from .commands import demo as demo_commands
from .commands import dnssec as dnssec_commands
from .commands import dns_worker as dns_worker_commands
from .commands import identity as identity_commands
from .commands import keys as keys_commands
from .commands import manifest as manifest_commands
from .commands import messaging as messaging_commands
from .commands import record as record_commands
from .commands import register_user as register_commands
from .commands import records as records_commands
from .commands import serve as serve_commands
from .commands import status as status_commands
from .commands import tls as tls_commands
from .commands import token as token_commands
from .commands import zone as zone_commands
from .node_lock import NodeError

COMMAND_MODULES = [keys_commands, record_commands, serve_commands, zone_commands,
                   records_commands, token_commands, manifest_commands, identity_commands,
                   messaging_commands, register_commands, demo_commands, cluster_commands,
                   tls_commands, backup_commands, status_commands, dns_worker_commands,
                   dnssec_commands]


DESCRIPTION = ("dmfdns: authoritative DNS server and HTTP sync node for the DNS Mesh Protocol "
               "(v=dmp1), and its user-side client.")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        raise CommandError(message, status=2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dmfdns", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"dmfdns {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def run(argv, *, now: float, get_reactor: Callable = None, stdout: TextIO = None,
        stderr: TextIO = None) -> int:
    ctx = Context(now=now, get_reactor=get_reactor, stdout=stdout or sys.stdout,
                  stderr=stderr or sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args, ctx) or 0)
    except CommandError as exc:
        print(f"dmfdns: {exc}", file=ctx.stderr)
        return exc.status
    except NodeError as exc:   # the data directory cannot be used (any command opening it)
        print(f"dmfdns: {exc}", file=ctx.stderr)
        return 1
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return 130
