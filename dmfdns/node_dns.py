"""The node's DNS side: the responder over the store, with its policy stage and error
report, and a TCP and a UDP listener per ``[dns] listen`` address (layer 3, built by
``make_service``; the DNS worker processes build their responder here too, so every
process answers alike: the same settings, the cookie secret from the store, so each
accepts the others' server cookies (RFC 9018), and the same response-rate limiting, each
process with its own buckets as Knot's and NSD's workers have)."""

from twisted.logger import Logger

from .config import Config
from .dns.cache_sizing import cache_bounds, is_auto, memory_limit
from .dns.counters import DnsCounters
from .dns.responder import Responder, ResponderSettings
from .dns.rrl import ResponseRateLimiter, RrlSettings
from .dns.server import (DNSDatagramProtocol, DNSStreamFactory, FailureLog, TransportCounters,
                         log as dns_log)
from .dns.update_handler import UpdateHandler, UpdateSettings
from .node_dnssec import zone_signers
from .node_listener import Listener
from .node_store import cookie_secret

rrl_log = Logger(namespace="dmfdns.dns.rrl")


def responder_settings(config: Config, secret: bytes | None, names: int = 0,
                       memory: int | None = None) -> ResponderSettings:
    """The responder's settings from ``[dns]``, an ``"auto"`` answer cache sized for
    ``names`` stored names and ``memory`` bytes (the node's limit when None)."""
    dns = config.dns
    entries, size = _cache_bounds(config, names, memory_limit() if memory is None else memory)
    return ResponderSettings(answer_ttl=dns.answer_ttl, edns_payload=dns.udp_max_payload,
                             nsid=dns.nsid.encode("utf-8") or None,
                             server_id=dns.server_id or None, version=dns.version or None,
                             cookie_secret=secret, cache_entries=entries, cache_bytes=size)


class CacheSizer:
    """Keeps an ``"auto"`` answer cache sized to the zone (``dns/cache_sizing.py``):
    ``tick`` (every ``RESIZE_INTERVAL`` seconds) reads how many names the store holds and
    bounds the cache anew when that changes its bounds. Each DNS process runs its own."""

    def __init__(self, config: Config, responder: Responder, store, memory: int | None = None):
        self.config = config
        self.responder = responder
        self.store = store
        self.memory = memory_limit() if memory is None else memory

    def tick(self) -> None:
        bounds = _cache_bounds(self.config, self.store.stats().names, self.memory)
        settings = self.responder.settings
        if bounds != (settings.cache_entries, settings.cache_bytes):
            self.responder.resize_cache(*bounds)


def _cache_bounds(config: Config, names: int, memory: int) -> tuple[int, int]:
    """The answer cache's ``(entries, bytes)`` for ``[dns]`` with ``names`` stored."""
    dns = config.dns
    return cache_bounds(dns.answer_cache_entries, dns.answer_cache_bytes, names, memory,
                        dns.workers)


def cache_sizer(config: Config, responder: Responder, store) -> CacheSizer | None:
    """A ``CacheSizer`` when either cache bound is ``"auto"``, else None."""
    dns = config.dns
    if not is_auto(dns.answer_cache_entries, dns.answer_cache_bytes):
        return None
    return CacheSizer(config, responder, store)


def rrl_settings(config: Config) -> RrlSettings:
    dns = config.dns
    return RrlSettings(rate=dns.rrl_rate, burst=dns.rrl_burst, slip=dns.rrl_slip,
                       ipv4_prefix=dns.rrl_ipv4_prefix, ipv6_prefix=dns.rrl_ipv6_prefix,
                       table_size=dns.rrl_table_size, edns_payload=dns.udp_max_payload)


def make_responder(config: Config, reactor, zones, store, transfers=None, *,
                   create_keys: bool = True) -> Responder:
    """The responder for ``zones`` over ``store``, with the store's cookie secret and,
    when ``[dns] rrl_rate`` is set, response-rate limiting; a failing answer is logged at
    most once per interval of ``reactor``'s clock. ``transfers`` (``dns.xfr.Transfers``)
    answers AXFR/IXFR over UDP and signed queries. Zones with ``dnssec = true`` are signed
    with their keys (``node_dnssec``; made when missing if ``create_keys``)."""
    secret = cookie_secret(store)
    counters = DnsCounters()
    policies = []
    limits = rrl_settings(config)
    if limits.enabled:
        policies.append(ResponseRateLimiter(
            limits, counters, cookie_secret=secret,
            report=lambda line: rrl_log.warn("{line}", line=line)))
    names = store.stats().names
    return Responder(list(zones), store, responder_settings(config, secret, names), counters,
                     policies=policies, on_error=FailureLog(reactor, dns_log).failure,
                     transfers=transfers,
                     signers=zone_signers(config, zones, reactor.seconds(),
                                          create=create_keys))


def dns_listeners(config: Config, reactor, responder: Responder, *, addresses=None,
                  reuseport: bool | None = None) -> list[Listener]:
    """Per address (``[dns] listen`` unless given) a TCP listener, then a UDP one that takes
    the port TCP got (port 0); bound with SO_REUSEPORT when several processes serve DNS
    (``[dns] workers`` > 1, ``node_workers``). The TCP listeners stream the
    responder's zone transfers."""
    dns = config.dns
    observe = responder.counters.observe_duration
    if reuseport is None:
        reuseport = dns.workers > 1
    listeners = []
    for address in dns.listen if addresses is None else addresses:
        udp_counters, tcp_counters = TransportCounters(), TransportCounters()
        udp = DNSDatagramProtocol(responder, reactor, max_udp=dns.udp_max_payload,
                                  counters=udp_counters, observe_duration=observe)
        tcp = DNSStreamFactory(responder, reactor, idle_timeout=dns.tcp_idle_timeout,
                               max_connections=dns.max_tcp_connections,
                               max_per_client=dns.max_tcp_connections_per_client,
                               max_message=dns.max_tcp_message,
                               counters=tcp_counters, observe_duration=observe,
                               transfers=responder.transfers)
        tcp_listener = Listener(reactor, "tcp", address, tcp, tcp_counters,
                                reuseport=reuseport)
        listeners += [tcp_listener, Listener(reactor, "udp", address, udp, udp_counters,
                                             same_port_as=tcp_listener, reuseport=reuseport)]
    return listeners


def transport_counters(listeners) -> dict:
    """``{"udp": [TransportCounters, ...], "tcp": [...], "dot": [...]}`` of the DNS
    listeners."""
    grouped = {}
    for listener in listeners:
        if listener.kind in ("udp", "tcp", "dot"):
            grouped.setdefault(listener.kind, []).append(listener.counters)
    return grouped


def add_update(config: Config, reactor, responder: Responder, zones, writes, credentials,
               metrics) -> UpdateHandler | None:
    """Let ``responder`` answer DNS UPDATE through ``writes`` when ``[update]`` is on."""
    update = config.update
    if not update.enabled:
        return None
    handler = UpdateHandler(
        zones=zones, writes=writes, credentials=credentials, clock=reactor,
        settings=UpdateSettings(
            fudge=int(update.tsig_fudge), replay_cache=update.replay_cache,
            claims=update.claims, claim_max_ttl=int(update.claim_max_ttl),
            claim_rate=update.claim_rate, claim_burst=update.claim_burst,
            claim_budget_rate=update.claim_budget_rate,
            claim_budget_burst=update.claim_budget_burst))
    responder.update = handler
    metrics.watch_updates(handler.counters)
    return handler
