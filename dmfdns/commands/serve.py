"""``dmfdns serve`` (run a node) and ``dmfdns check-config FILE`` (validate only)."""

from twisted.logger import (FilteringLogObserver, Logger, LogLevel,
                            LogLevelFilterPredicate, globalLogBeginner, textFileLogObserver)

from ..config import ConfigError, ListenAddress, load_config
from ..dns.zone import ZoneError
from ..node import NodeError, cluster_preflight, http_preflight, load_zones, make_service
from ..store.api import StoreError
from . import CommandError

STARTUP_ERRORS = (ConfigError, ZoneError, NodeError, StoreError)
log = Logger(namespace="dmfdns.server")


def register(sub) -> None:
    serve_parser = sub.add_parser(
        "serve", help="run a node (DNS UDP+TCP, store, sweep) until SIGINT/SIGTERM",
        description="Run a dmfdns node. Without --config it uses the embedded default: "
                    "zone mesh.test on 127.0.0.1:5353 (UDP and TCP), data in ./dmfdns-data.")
    serve_parser.add_argument("--config", metavar="FILE",
                              help="node configuration (TOML); default: the embedded one")
    serve_parser.set_defaults(handler=serve)

    check = sub.add_parser("check-config",
                           help="validate a configuration file with its zone, token and key "
                                "files, without starting anything")
    check.add_argument("file", metavar="FILE", help="node configuration (TOML)")
    check.set_defaults(handler=check_config)


def load(path):
    """The configuration at ``path`` (None: the embedded default) or a CommandError."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def check_config(args, ctx) -> int:
    config = load(args.file)
    try:
        # Everything make_service reads before binding: zone files, token and key files.
        zones = load_zones(config)
        http_preflight(config)
        cluster_preflight(config, [zone.origin for zone in zones])
    except (ConfigError, ZoneError) as exc:
        raise CommandError(f"{args.file}: {exc}") from None
    print(f"{args.file}: OK", file=ctx.stdout)
    for line in summary(config, zones):
        print(f"  {line}", file=ctx.stdout)
    return 0


def summary(config, zones, dns_bound=None) -> list[str]:
    dns = ", ".join(str(a) for a in (dns_bound or config.dns.listen))
    http = ", ".join(str(a) for a in config.http.listen) or "off"
    zone_list = ", ".join(f"{z.origin} (serial {z.serial})" for z in zones) or "none"
    return [f"node {config.node.node_id}, data in {config.node.data_dir}",
            f"zones: {zone_list}",
            f"DNS (UDP+TCP): {dns}",
            f"HTTP: {http} (auth {config.http.auth_mode})"]


def dig_hints(zones, addresses: list[ListenAddress]) -> list[str]:
    """Commands an operator can paste to see the node answer."""
    if not zones or not addresses:
        return []
    address = addresses[0]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    target = f"dig @{host} -p {address.port}"
    apex = zones[0].origin
    return [f"{target} {apex} SOA",
            f"{target} +tcp {apex} NS",
            f"{target} does-not-exist.{apex} TXT    (NXDOMAIN with the SOA)"]


def start_logging(stream) -> None:
    """Twisted's logger to ``stream`` (stderr), info and above."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    observer = FilteringLogObserver(textFileLogObserver(stream), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def serve(args, ctx) -> int:
    config = load(args.config)
    reactor = ctx.get_reactor()
    try:
        node = make_service(config, reactor)
    except STARTUP_ERRORS as exc:
        raise CommandError(str(exc)) from None
    try:
        node.startService()
    except STARTUP_ERRORS as exc:
        node.close()
        raise CommandError(str(exc)) from None
    start_logging(ctx.stderr)
    bound = node.dns_addresses("udp")
    for line in summary(config, node.zones, bound):
        log.info("{line}", line=line)
    hints = dig_hints(node.zones, bound)
    if hints:
        print("dmfdns is serving; try:", file=ctx.stdout)
        for hint in hints:
            print(f"  {hint}", file=ctx.stdout)
        print("stop with Ctrl-C (SIGINT) or SIGTERM", file=ctx.stdout)
    ctx.stdout.flush()
    reactor.addSystemEventTrigger("before", "shutdown", node.stopService)
    reactor.run()
    log.info("dmfdns stopped")
    return 0
