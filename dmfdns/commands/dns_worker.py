"""``dmfdns dns-worker``: one DNS worker process of a node (``[dns] workers`` > 1).

Started by the node's main process (``node_workers.WorkerPool``), never by hand: it reads
the node's configuration file, opens the store read-only, binds the addresses the main
process bound (``--listen``, real ports) with SO_REUSEPORT, writes its counters to stdout
once a second, and stops on SIGTERM or when its stdin closes (the main process is gone).
"""

import argparse
import dataclasses
import pathlib

from twisted.logger import Logger

from ..config import ConfigError, load_config
from ..config_values import parse_listen
from ..dns.zone import ZoneError
from ..node_lock import NodeError
from ..node_workers import WORKER_COMMAND, run_worker
from ..store.api import StoreError
from . import CommandError
from .serve import start_logging

log = Logger(namespace="dmfdns.server")


def register(sub) -> None:
    parser = sub.add_parser(WORKER_COMMAND, help=argparse.SUPPRESS,
                            description="A DNS worker process of a node; started by "
                                        "`dmfdns serve` when [dns] workers > 1.")
    parser.add_argument("--config", metavar="FILE", required=True)
    parser.add_argument("--data-dir", metavar="DIR", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--listen", metavar="HOST:PORT", action="append", required=True)
    parser.set_defaults(handler=dns_worker)


def dns_worker(args, ctx) -> int:
    try:
        config = load_config(args.config)
        config = dataclasses.replace(config, node=dataclasses.replace(
            config.node, data_dir=pathlib.Path(args.data_dir)))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    addresses = [parse_listen(text) for text in args.listen]
    if None in addresses:
        raise CommandError(f"--listen takes host:port, got {args.listen}")
    reactor = ctx.get_reactor()
    start_logging(ctx.stderr)
    try:
        run_worker(config, reactor, addresses)
    except (ConfigError, ZoneError, NodeError, StoreError) as exc:
        raise CommandError(f"DNS worker {args.index}: {exc}") from None
    log.info("DNS worker {index} serving {addresses}", index=args.index,
             addresses=", ".join(args.listen))
    reactor.run()
    return 0
