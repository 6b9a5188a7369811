"""The node's TLS: HTTPS and DNS over TLS listeners, the peers' outbound TLS, and the
certificate reload that SIGHUP triggers (layer 3, built by ``make_service``).

``tls_preflight`` (called by ``read_node_files``) reads every certificate, key and CA file
before the node takes its lock (a ConfigError names the file) and applies the plain-HTTP
peer policy: a static ``http://`` peer on a globally routable address is refused unless
``[cluster] allow_plain_http_peers`` (its sync token would cross the internet in clear
text). ``tls_listeners`` gives ``[http] tls_listen`` the HTTP site behind TLS and
``[dns] tls_listen`` the DNS-over-TCP factory behind TLS (RFC 7858: same responder, same
per-client caps, idle timeout and pipelining), padding responses to padded queries
(RFC 8467).
"""

from dataclasses import dataclass

from twisted.logger import Logger

from .config import Config, ConfigError
from .dns.server import DNSStreamFactory, TransportCounters
from .node_listener import Listener
from .outbound.tls import TlsConfigError, TlsPolicy, TlsSettings, plain_http_outside
from .tls_listen import DOT_ALPN, HTTP_ALPN, ServerTls, tls_factory

log = Logger(namespace="dmfdns.tls")
HTTPS_LISTEN_BACKLOG = 1024      # as the plain HTTP listener's (node_http)


@dataclass(frozen=True)
class NodeTls:
    https: ServerTls | None     # None: no [http] tls_listen
    dot: ServerTls | None       # None: no [dns] tls_listen
    peers: TlsPolicy            # how https:// peers are verified

    @classmethod
    def none(cls) -> "NodeTls":
        return cls(None, None, TlsPolicy())

    def reload(self) -> list[str]:
        """Re-read the certificate files; one line per listener kind for the log. A kind
        whose files fail keeps its old certificate (and says why)."""
        lines = []
        for kind, server in (("https", self.https), ("dot", self.dot)):
            if server is None:
                continue
            try:
                server.reload()
            except TlsConfigError as exc:
                lines.append(f"{kind}: certificate NOT reloaded, the old one stays: {exc}")
            else:
                lines.append(f"{kind}: certificate reloaded from {server.cert_file} "
                             f"(valid until {server.not_after:%Y-%m-%d %H:%M} UTC)")
        return lines


def tls_preflight(config: Config) -> NodeTls:
    http, cluster = config.http, config.cluster
    refuse_plain_peers(cluster.peers, allowed=cluster.allow_plain_http_peers)
    try:
        https = dot = None
        if http.tls_listen:
            https = ServerTls(http.tls_cert_file, http.tls_key_file, alpn=HTTP_ALPN,
                              client_ca_file=http.tls_client_ca_file)
        if config.dns.tls_listen:
            dot = ServerTls(http.tls_cert_file, http.tls_key_file, alpn=DOT_ALPN)
        peers = TlsPolicy(TlsSettings(ca_file=cluster.ca_file,
                                      origin_ca_files=dict(cluster.peer_ca_files),
                                      client_cert_file=cluster.client_cert_file,
                                      client_key_file=cluster.client_key_file))
    except TlsConfigError as exc:
        raise ConfigError(str(exc)) from None
    return NodeTls(https, dot, peers)


def refuse_plain_peers(urls, *, allowed: bool) -> None:
    outside = [url for url in urls if plain_http_outside(url)]
    if outside and not allowed:
        raise ConfigError(
            f"[cluster] peers: {', '.join(outside)} is plain http:// outside loopback and "
            "private ranges (the sync token would travel in clear text); use https://, or "
            "set allow_plain_http_peers = true")
    for url in outside:
        log.warn("syncing with {url} over plain http:// (allow_plain_http_peers = true): "
                 "the sync token travels in clear text", url=url)


def tls_listeners(config: Config, reactor, responder, site, tls: NodeTls) -> list[Listener]:
    """HTTPS on every ``[http] tls_listen`` address, DoT on every ``[dns] tls_listen``."""
    listeners = [Listener(reactor, "https", address, tls_factory(tls.https, site, reactor),
                          None, backlog=HTTPS_LISTEN_BACKLOG)
                 for address in config.http.tls_listen]
    dns = config.dns
    for address in dns.tls_listen:
        counters = TransportCounters()
        stream = DNSStreamFactory(
            responder, reactor, idle_timeout=dns.tcp_idle_timeout,
            max_connections=dns.max_tcp_connections,
            max_per_client=dns.max_tcp_connections_per_client,
            max_message=dns.max_tcp_message, counters=counters, proto="dot",
            observe_duration=responder.counters.observe_duration, pad_responses=True)
        listeners.append(Listener(reactor, "dot", address,
                                  tls_factory(tls.dot, stream, reactor), counters))
    return listeners


def reload_certificates(tls: NodeTls) -> list[str]:
    """What SIGHUP does for TLS: re-read the certificates, log one line per kind."""
    lines = tls.reload()
    for line in lines:
        log.info("{line}", line=line)
    return lines
