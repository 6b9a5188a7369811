"""``dmfdns serve`` (run a node) and ``dmfdns check-config FILE`` (validate only)."""

import gc
import os
import signal

from twisted.logger import (FilteringLogObserver, Logger, LogLevel,
                            LogLevelFilterPredicate, globalLogBeginner, textFileLogObserver)

from ..config import ConfigError, ListenAddress, load_config, service_manager_environment
from ..dns.zone import ZoneError
from ..node import make_service
from ..node_files import read_node_files
from ..node_lock import NodeError, check_data_dir
from ..node_reload import reload_node
from ..sd_notify import Notifier
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

    check = sub.add_parser(
        "check-config", help="validate a configuration file with its zone, token and key "
                             "files, without starting anything",
        description="Load FILE as dmfdns serve would: every key and value, the zone files, "
                    "the token, key and certificate files it names, and whether this user "
                    "can use the data directory. Prints OK and a summary, or one line naming "
                    "the problem and exits 1. Run it as the user the node runs as.")
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
        # Everything make_service reads before binding: zone files, token and key files,
        # and whether the data directory can be used by this user.
        files = read_node_files(config)
        check_data_dir(config.node.data_dir)
    except (ConfigError, ZoneError, NodeError) as exc:
        raise CommandError(f"{args.file}: {exc}") from None
    for warning in rehearsal_warnings(config, files.operator_token):
        print(f"dmfdns: warning: {args.file}: {warning}", file=ctx.stderr)
    print(f"{args.file}: OK", file=ctx.stdout)
    for line in summary(config, files.zones):
        print(f"  {line}", file=ctx.stdout)
    return 0


REHEARSAL_PREFIX = "rehearsal-"
"""Secrets shipped in the repository (``node/public/operator.token``) start with this."""


def rehearsal_warnings(config, operator_token: str) -> list[str]:
    """Warnings for a rehearsal secret used where others can reach the node."""
    public = [str(a) for a in config.http.listen + config.http.tls_listen + config.dns.listen
              + config.dns.tls_listen if not a.is_loopback]
    if not public or not operator_token.startswith(REHEARSAL_PREFIX):
        return []
    return [f"the operator token is the public rehearsal value from the repository, and "
            f"the node listens on non-loopback {', '.join(public)}: write a new token "
            "(e.g. `openssl rand -hex 32`) into the operator token file"]


def summary(config, zones, dns_bound=None, generation=None) -> list[str]:
    """What the node serves. ``generation`` (the store's, when running) makes the serials
    the served ones: the file's serial plus the store's changes (dns-behaviour.md)."""
    dns = ", ".join(str(a) for a in (dns_bound or config.dns.listen))
    http = ", ".join(str(a) for a in config.http.listen) or "off"
    zone_list = ", ".join(f"{z.origin} (serial {_serial(z, generation)})"
                          for z in zones) or "none"
    return [f"node {config.node.node_id}, data in {config.node.data_dir}",
            f"zones: {zone_list}",
            f"DNS (UDP+TCP): {dns}",
            f"HTTP: {http} (auth {config.http.auth_mode})"] + _tls_summary(config) \
        + _transfer_summary(config, zones) + _public_summary(config)


def _public_summary(config) -> list[str]:
    """Registration and DNS UPDATE, when on (a public node)."""
    lines = []
    if config.registration.enabled:
        lines.append(f"registration: on, node hostname {config.registration.node_hostname}")
    if config.update.enabled:
        claims = "claims on" if config.update.claims else "claims off"
        lines.append(f"DNS UPDATE: on (TSIG, {claims})")
    return lines


def _transfer_summary(config, zones) -> list[str]:
    """Who may transfer which zone, and whom it NOTIFYs (transfers are off by default)."""
    lines = []
    for source, zone in zip(config.zones, zones):
        if not (source.transfer_allow or source.notify):
            continue
        allow = ", ".join(source.transfer_allow) or "nobody"
        key = f"TSIG key file {source.tsig_key_file}" if source.tsig_key_file else "no TSIG"
        notify = ", ".join(str(a) for a in source.notify) or "none"
        lines.append(f"transfers of {zone.origin}: from {allow} ({key}); NOTIFY {notify}")
    return lines


def _serial(zone, generation) -> str:
    if generation is None:
        return f"{zone.serial} in the file"
    return str((zone.serial + generation) & 0xFFFFFFFF)


def _tls_summary(config) -> list[str]:
    """The encrypted listeners and the peers' TLS policy, said once at start-up."""
    lines = []
    for label, addresses in (("HTTPS", config.http.tls_listen),
                             ("DNS over TLS", config.dns.tls_listen)):
        if addresses:
            lines.append(f"{label}: {', '.join(str(a) for a in addresses)} "
                         f"(certificate {config.http.tls_cert_file}; SIGHUP reloads it)")
    cluster = config.cluster
    if cluster.peers or cluster.base:
        trust = cluster.ca_file or "the system trust store"
        plain = ("allowed (allow_plain_http_peers = true)" if cluster.allow_plain_http_peers
                 else "refused on globally routable addresses")
        lines.append(f"peers: https:// verified against {trust}; plain http:// {plain}")
    return lines


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


def reload_on_sighup(reactor, node, path, notifier: Notifier) -> None:
    """SIGHUP (``systemctl reload``, certbot's deploy hook) reloads the node from ``path``
    (``node_reload``: zones, tokens, certificates, the safe keys), told to systemd as
    RELOADING=1 ... READY=1. The handler only schedules the work on the reactor, as a
    signal may arrive anywhere."""
    def reload():
        notifier.reloading()
        result = reload_node(node, path)
        notifier.ready("reload refused: " + result.error if result.error else "serving")

    def handler(signum, frame):
        reactor.callFromThread(reload)
    signal.signal(signal.SIGHUP, handler)


# Python's cyclic garbage collector holds the GIL while it runs, so every collection is a
# reactor stall as long as its walk (docs/performance.md, measured with [node] stall_log and
# the collections' thread CPU time at a million records). A full (generation 2) collection
# walked a few hundred thousand containers of the answer cache and the full-set index:
# 100-420 ms, until both stopped keeping containers per entry. A young collection of
# 20,000 objects in a node pulling a million records cost 11-16 ms of CPU (75 % of them
# cyclic garbage: Deferreds with cancellers, HTTP client objects), and a middle one after
# 50 of them walked up to a million: 50-65 ms. 5,000 young objects and a middle
# collection every 20 young ones bound them to about 4 ms and 100,000 objects, while
# what a request or a sync page allocates still dies long before generation 2. What
# start-up made (modules, zones, config) is frozen out of every collection.
GC_THRESHOLDS = (5_000, 20, 10)


def tune_collector() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


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
    for warning in rehearsal_warnings(config, node.files.operator_token):
        log.warn("{warning}", warning=warning)
    bound = node.dns_addresses("udp")
    for line in summary(config, node.zones, bound, node.store.generation()):
        log.info("{line}", line=line)
    hints = dig_hints(node.zones, bound)
    if hints:
        print("dmfdns is serving; try:", file=ctx.stdout)
        for hint in hints:
            print(f"  {hint}", file=ctx.stdout)
        print("stop with Ctrl-C (SIGINT) or SIGTERM", file=ctx.stdout)
    ctx.stdout.flush()
    notifier = Notifier(service_manager_environment(), os.getpid())
    reactor.addSystemEventTrigger("before", "shutdown", notifier.stopping)
    reactor.addSystemEventTrigger("before", "shutdown", node.stopService)
    reload_on_sighup(reactor, node, args.config, notifier)
    reactor.callWhenRunning(notifier.ready, "serving")
    reactor.callWhenRunning(notifier.start_watchdog, reactor)
    tune_collector()
    reactor.run()
    log.info("dmfdns stopped")
    return 0
