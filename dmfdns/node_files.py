"""Everything a node reads from disk, read once, before it takes its lock (layer 3).

``read_node_files`` parses the zone files and reads the token, key and TLS certificate
files of ``[http]`` and ``[cluster]`` into one frozen ``NodeFiles``; ``make_service`` builds from it and
``dmfdns check-config`` calls it to validate without starting anything. A bad file is a
``ConfigError`` or ``ZoneError`` naming it, raised before anything is locked or opened.
"""

from dataclasses import dataclass, field

from .config import (Config, ConfigError, read_manifest_wire, read_operator_key,
                     read_operator_token, read_sync_token)
from .dns.zone import parse_zone
from .http.site import OpenBindRefused, check_bind
from .node_tls import NodeTls, tls_preflight
from .node_xfr import transfer_policies
from .proto.keyfile import parse_seed


@dataclass(frozen=True)
class NodeFiles:
    zones: tuple                  # parsed zones, in configuration order
    operator_token: str           # [http] bearer token of the operator ("" = none)
    operator_key: bytes | None    # [cluster] pinned key that must sign cluster.<base>
    sync_token: str               # [cluster] bearer token of /v1/sync/* ("" = sync off)
    manifest_wire: str | None     # [cluster] signed manifest to adopt at start
    heartbeat_seed: bytes | None  # [cluster] seed that signs the heartbeat (None = off)
    tls: NodeTls = field(default_factory=NodeTls.none)  # certificates, peers' CA (node_tls)
    transfers: dict = field(default_factory=dict)   # {origin: xfr.TransferPolicy}

    @property
    def origins(self) -> tuple:
        return tuple(zone.origin for zone in self.zones)


def read_node_files(config: Config) -> NodeFiles:
    """Read and check every file ``config`` names; refuse an ``open`` write API beyond
    loopback (checked here, not only by the config loader, because this is what runs
    before sockets get bound)."""
    _check_http_binds(config)
    cluster = config.cluster
    zones = load_zones(config)
    if not zones:
        raise ConfigError("zones: no zone files configured, so the node would answer every "
                          "query REFUSED; list at least one (node/example.toml shows how)")
    return NodeFiles(zones=tuple(zones), operator_token=read_operator_token(config.http),
                     operator_key=read_operator_key(cluster),
                     sync_token=read_sync_token(cluster),
                     manifest_wire=read_manifest_wire(cluster),
                     heartbeat_seed=_heartbeat_seed(config, zones),
                     tls=tls_preflight(config),
                     transfers=transfer_policies(config, zones))


def load_zones(config: Config) -> list:
    """The parsed zone files of ``config``; ZoneError (file and line) or ConfigError."""
    zones = []
    for source in config.zones:
        try:
            text = source.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"zone file {source.file}: cannot read: {exc.strerror}") \
                from None
        except UnicodeDecodeError:
            raise ConfigError(f"zone file {source.file}: not UTF-8 text") from None
        zones.append(parse_zone(text, source=str(source.file)))
    origins = [zone.origin for zone in zones]
    duplicates = sorted({o for o in origins if origins.count(o) > 1})
    if duplicates:
        raise ConfigError(f"zone {duplicates[0]} is configured twice")
    return zones


def _check_http_binds(config: Config) -> None:
    for address in config.http.listen + config.http.tls_listen:
        try:
            check_bind(config.http.auth_mode, address.host,
                       allow_open_non_loopback=config.http.allow_open_non_loopback)
        except OpenBindRefused as exc:
            raise ConfigError(f"[http] {exc}") from None


def _heartbeat_seed(config: Config, zones: list) -> bytes | None:
    cluster = config.cluster
    if not cluster.heartbeat_endpoint or not zones:
        return None
    try:
        seed = parse_seed(cluster.heartbeat_key_file.read_bytes())
    except OSError as exc:
        raise ConfigError(f"[cluster] heartbeat_key_file {cluster.heartbeat_key_file}: "
                          f"cannot read: {exc.strerror}") from None
    if seed is None:
        raise ConfigError(f"[cluster] heartbeat_key_file {cluster.heartbeat_key_file}: must "
                          "hold a 32-byte seed (64 hex characters)")
    return seed
