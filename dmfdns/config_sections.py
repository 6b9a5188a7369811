"""The sections of the node configuration: one frozen dataclass per TOML table, each field
carrying its default, its checker and its meaning (``config_values.setting``), so the code is
the one source of defaults and of the documentation tables (``describe``). Loading a file
into them is ``config.py``'s job.
"""

import dataclasses
import pathlib
from dataclasses import dataclass, field

from . import config_values as kinds
from .config_values import ListenAddress, setting

AUTH_MODES = ("open", "legacy", "multi-tenant")


@dataclass(frozen=True)
class NodeConfig:
    node_id: str = setting(
        "node1", kinds.text(64, r"[A-Za-z0-9][A-Za-z0-9._-]*",
                       "letters, digits, '.', '_' or '-', starting with a letter or digit"),
        "this node's id in the change log and the cluster manifest")
    data_dir: pathlib.Path = setting(
        pathlib.Path("dmfdns-data"), kinds.path,
        "directory of the LMDB environment and the node lock (relative: to the working "
        "directory)")
    stall_log: float = setting(
        0.0, kinds.duration(0, 60),
        "log the reactor thread's stack when it is held longer than this (0 = off)")


@dataclass(frozen=True)
class StoreConfig:
    map_size: int = setting(
        2**30, kinds.size(2**20, 2**44), "LMDB map size: the most the store can hold")
    sweep_interval: float = setting(
        60.0, kinds.duration(0.1, 86400), "how often expired values and tombstones are removed")
    sweep_batch: int = setting(
        1000, kinds.integer(1, 1_000_000), "at most this many removed per sweep tick")
    commit_max_records: int = setting(
        1000, kinds.integer(1, 100_000),
        "most writes one group commit (one durable transaction) carries")
    commit_delay: float = setting(
        0.0, kinds.duration(0, 1),
        "how long a write waits for others to share its commit (0: the next reactor turn)")
    journal_max_changes: int = setting(
        100_000, kinds.integer(0, 100_000_000),
        "IXFR journal bound in value changes, kept while a zone allows transfers "
        "(0 = none: every IXFR gets the full zone)")


@dataclass(frozen=True)
class DnsConfig:
    listen: tuple = setting(
        (ListenAddress("127.0.0.1", 5353),), kinds.listen_list(1),
        "addresses served over both UDP and TCP")
    answer_ttl: int = setting(
        60, kinds.integer(0, 86400), "TTL of served TXT answers (never beyond a record's life)")
    answer_cache_entries: int | str = setting(
        kinds.AUTO, kinds.or_auto(kinds.integer(0, 100_000_000)),
        "answers the answer cache keeps (0 = no cache; \"auto\": 1.25 per stored name, at "
        "least 100,000); once full it admits an answer on its second miss")
    answer_cache_bytes: int | str = setting(
        kinds.AUTO, kinds.or_auto(kinds.size(0, 2**40)),
        "memory bound of the answer cache (keys, answers and ~355 bytes each; 0 = no cache; "
        "\"auto\": 1 KiB per stored name, at least 64 MiB, at most a quarter of the "
        "memory over the DNS processes)")
    udp_max_payload: int = setting(
        1232, kinds.integer(512, 4096),
        "largest UDP response with EDNS (RFC 6891, Flag Day 2020)")
    nsid: str = setting("", kinds.text(128), "NSID option value (RFC 5001); \"\" = none")
    server_id: str = setting(
        "", kinds.text(255), "answer to CH TXT id.server / hostname.bind; \"\" = REFUSED")
    version: str = setting(
        "", kinds.text(255), "answer to CH TXT version.bind / version.server; \"\" = REFUSED")
    tcp_idle_timeout: float = setting(
        10.0, kinds.duration(0.1, 3600),
        "close a TCP connection idle this long (RFC 7766 §6.2.3)")
    max_tcp_connections: int = setting(
        100, kinds.integer(1, 100_000),
        "open TCP connections per listener; past it a quiet one is closed to make room")
    max_tcp_connections_per_client: int = setting(
        10, kinds.integer(1, 100_000),
        "open TCP connections per client address; past it the client's own quiet one closes")
    max_tcp_message: int = setting(
        65535, kinds.integer(12, 65535),
        "largest TCP query accepted (RFC 1035 §4.2.2 framing)")
    tls_listen: tuple = setting(
        (), kinds.listen_list(0),
        "DNS over TLS addresses (RFC 7858; port 853), with the [http] certificate")
    workers: int = setting(
        1, kinds.integer(1, 64),
        "processes answering DNS (SO_REUSEPORT): the main one and workers - 1 read-only")
    rrl_rate: float = setting(
        0.0, kinds.number(0, 1_000_000),
        "response-rate limit: UDP responses per second per client prefix, answer class "
        "and name (0 = off)")
    rrl_burst: int = setting(
        0, kinds.integer(0, 10_000_000),
        "responses a bucket may send at once (0 = rrl_rate, one second's worth)")
    rrl_slip: int = setting(
        2, kinds.integer(0, 100),
        "every Nth rate-limited response is sent truncated (TC=1) instead of dropped; "
        "0 = drop all")
    rrl_ipv4_prefix: int = setting(
        24, kinds.integer(8, 32), "IPv4 client prefix length sharing one bucket")
    rrl_ipv6_prefix: int = setting(
        56, kinds.integer(16, 128), "IPv6 client prefix length sharing one bucket")
    rrl_table_size: int = setting(
        100_000, kinds.integer(1, 10_000_000), "most rate-limit buckets kept")


@dataclass(frozen=True)
class ZoneSource:
    """One RFC 1035 zone file served by the node, and who may transfer it
    (docs/operator-guide.md, "Hidden primary, public secondaries")."""

    file: pathlib.Path
    transfer_allow: tuple = ()          # networks that may AXFR/IXFR; () = no transfers
    tsig_key_file: pathlib.Path | None = None   # required on transfers, signs NOTIFY
    notify: tuple = ()                  # ListenAddress of secondaries to NOTIFY
    dnssec: bool = False                # sign answers online (docs/dns-behaviour.md)
    dnssec_algorithm: str = "ed25519"   # of a key generated on first start
    dnssec_validity: float = 14 * 86400.0   # RRSIG inception to expiration (seconds)
    dnssec_refresh: float = 86400.0     # signatures are re-made this often
    dnssec_keys: str = "csk"            # key layout: "csk" or "ksk-zsk" (RFC 6781 3.1)
    # RFC 7583 rollover timing (dns/key_schedule.py): Dprp, DprpP, TTLds and the margins.
    dnssec_propagation: float = 300.0
    dnssec_parent_propagation: float = 3600.0
    dnssec_ds_ttl: float = 86400.0
    dnssec_publish_safety: float = 3600.0
    dnssec_retire_safety: float = 3600.0


DNSSEC_TIMINGS = {"dnssec_propagation": "5m", "dnssec_parent_propagation": "1h",
                  "dnssec_ds_ttl": "1d", "dnssec_publish_safety": "1h",
                  "dnssec_retire_safety": "1h"}
ZONE_KEYS = ("file", "transfer_allow", "tsig_key_file", "notify", "dnssec",
             "dnssec_algorithm", "dnssec_validity", "dnssec_refresh",
             "dnssec_keys") + tuple(DNSSEC_TIMINGS)
DNSSEC_ALGORITHMS = ("ed25519", "ecdsap256sha256")
DNSSEC_KEY_LAYOUTS = ("csk", "ksk-zsk")


@dataclass(frozen=True)
class HttpConfig:
    listen: tuple = setting(
        (ListenAddress("127.0.0.1", 8053),), kinds.listen_list(0), "HTTP API addresses")
    auth_mode: str = setting(
        "open", kinds.choice(*AUTH_MODES),
        "write auth: open (anyone), legacy (operator token), multi-tenant (per-user tokens)")
    allow_open_non_loopback: bool = setting(
        False, kinds.boolean, "let auth_mode = \"open\" listen on a non-loopback address")
    operator_token: str = setting(
        "", kinds.text(512), "operator bearer token (prefer operator_token_file)")
    operator_token_file: pathlib.Path | None = setting(
        None, kinds.optional_path, "file whose first line is the operator token")
    rate_limit: float = setting(
        100.0, kinds.number(0, 1_000_000), "requests per second per client (0 = no limit)")
    rate_burst: int = setting(
        1000, kinds.integer(1, 10_000_000), "requests a client may make in one burst")
    trusted_proxies: tuple = setting(
        (), kinds.networks, "proxies whose X-Forwarded-For names the client")
    max_body_bytes: int = setting(
        65536, kinds.size(1024, 64 * 2**20), "largest request body accepted")
    max_connections: int = setting(
        256, kinds.integer(1, 100_000),
        "open HTTP connections; past it a quiet one is closed to make room")
    max_connections_per_client: int = setting(
        64, kinds.integer(1, 100_000),
        "open HTTP connections per client address; past it the client's own quiet one closes")
    idle_timeout: float = setting(
        30.0, kinds.duration(0.1, 3600), "close an HTTP connection idle this long")
    metrics_token: str = setting(
        "", kinds.text(512), "bearer token for /metrics; \"\" = open")
    tls_listen: tuple = setting(
        (), kinds.listen_list(0), "HTTPS API addresses (TLS 1.2+); [] = no HTTPS listener")
    tls_cert_file: pathlib.Path | None = setting(
        None, kinds.optional_path,
        "PEM certificate chain of HTTPS and DNS over TLS (reloaded on SIGHUP)")
    tls_key_file: pathlib.Path | None = setting(
        None, kinds.optional_path, "PEM private key of tls_cert_file")
    tls_client_ca_file: pathlib.Path | None = setting(
        None, kinds.optional_path,
        "CA whose client certificates are verified when presented (mutual TLS)")


@dataclass(frozen=True)
class ClusterConfig:
    """Replication between the nodes of one operator's cluster (docs/cluster.md)."""

    base: str = setting(
        "", kinds.domain,
        "cluster base domain: the manifest lives at cluster.<base>; \"\" = none")
    operator_key: str = setting(
        "", kinds.hex_key, "pinned operator public key (64 hex) that must sign the manifest")
    operator_key_file: pathlib.Path | None = setting(
        None, kinds.optional_path, "file holding the pinned operator public key (64 hex)")
    manifest_file: pathlib.Path | None = setting(
        None, kinds.optional_path, "file holding a signed manifest to adopt at start")
    sync_token: str = setting(
        "", kinds.text(512),
        "bearer token of /v1/sync/* and of calls to peers; \"\" = sync off")
    sync_token_file: pathlib.Path | None = setting(
        None, kinds.optional_path, "file whose first line is the sync token")
    peers: tuple = setting(
        (), kinds.url_list, "peer base URLs used while no manifest is adopted")
    sync_interval: float = setting(
        10.0, kinds.duration(0.05, 3600), "time between anti-entropy and gossip ticks")
    page_limit: int = setting(
        1000, kinds.integer(1, 10_000), "digest entries asked per page")
    max_pages_per_tick: int = setting(
        1000, kinds.integer(1, 100_000), "digest pages read from one peer in one tick")
    max_records_per_tick: int = setting(
        1_000_000, kinds.integer(1, 10_000_000), "records pulled from one peer in one tick")
    tick_budget: float = setting(
        9.0, kinds.duration(0.05, 3600), "time one peer's sync may take in one tick")
    peer_timeout: float = setting(
        5.0, kinds.duration(0.05, 600), "timeout of one HTTP call to a peer")
    max_response_bytes: int = setting(
        16 * 2**20, kinds.size(2**16, 2**30), "largest peer response read; larger is dropped")
    fullset_interval: float = setting(
        60.0, kinds.duration(0.05, 86400), "how often the full-set bucket digests are compared")
    heartbeat_endpoint: str = setting(
        "", kinds.heartbeat_endpoint,
        "public http(s)://host[:port] announced in the heartbeat; "
        "\"\" = no heartbeat")
    heartbeat_key_file: pathlib.Path | None = setting(
        None, kinds.optional_path, "operator key seed file that signs the heartbeat")
    heartbeat_interval: float = setting(
        300.0, kinds.duration(1, 86400), "how often the heartbeat is re-signed and published")
    heartbeat_ttl: float = setting(
        86400.0, kinds.duration(60, 30 * 86400), "lifetime of a published heartbeat")
    ca_file: pathlib.Path | None = setting(
        None, kinds.optional_path,
        "CA certificates that https:// peers are verified against; \"\" = the system's")
    peer_ca_files: tuple = setting(
        (), kinds.origin_paths,
        "CA file per https:// peer origin, in place of ca_file for that peer")
    client_cert_file: pathlib.Path | None = setting(
        None, kinds.optional_path, "client certificate shown to https:// peers (mutual TLS)")
    client_key_file: pathlib.Path | None = setting(
        None, kinds.optional_path, "private key of client_cert_file")
    require_client_certificate: bool = setting(
        False, kinds.boolean,
        "sync endpoints also need a client certificate verified by [http] tls_client_ca_file")
    allow_plain_http_peers: bool = setting(
        False, kinds.boolean,
        "sync with http:// peers outside loopback and private ranges (token in clear text)")


@dataclass(frozen=True)
class RegistrationConfig:
    """Self-service registration of users (docs/http-api.md, "Registration")."""

    enabled: bool = setting(
        False, kinds.boolean,
        "serve /v1/registration/* (needs auth_mode = \"multi-tenant\" and node_hostname)")
    node_hostname: str = setting(
        "", kinds.domain, "this node's public host name, signed into every registration")
    zone: str = setting(
        "", kinds.domain, "zone the minted TSIG keys are scoped to; \"\" = the first zone")
    allowlist: tuple = setting(
        (), kinds.domain_list, "subject domains that may register; [] = any")
    credential_ttl: float = setting(
        7_776_000.0, kinds.duration(60, 10 * 365 * 86400),
        "lifetime of registered tokens and TSIG keys")
    token_rate: float = setting(
        10.0, kinds.number(0.001, 1_000_000), "requests per second of a registered token")
    token_burst: int = setting(
        50, kinds.integer(1, 10_000_000), "request burst of a registered token")
    requests_per_hour: float = setting(
        5.0, kinds.number(0.001, 1_000_000),
        "registration requests per client address per hour")
    request_burst: int = setting(
        5, kinds.integer(1, 1_000_000), "registration requests a client may make at once")
    tsig_scope: str = setting(
        "standard", kinds.choice("standard", "tight", "loose"),
        "scope of minted TSIG keys: standard (own names + shared pools), tight (own names), "
        "loose (the whole zone)")
    max_pending: int = setting(
        10_000, kinds.integer(1, 1_000_000), "challenges held in memory at once")


@dataclass(frozen=True)
class UpdateConfig:
    """DNS UPDATE (RFC 2136) with TSIG (RFC 8945), and unsigned claims (docs/dns-update.md)."""

    enabled: bool = setting(
        False, kinds.boolean, "accept DNS UPDATE; REFUSED while false")
    tsig_fudge: float = setting(
        300.0, kinds.duration(1, 3600), "TSIG time window either side of our clock")
    replay_cache: int = setting(
        100_000, kinds.integer(100, 10_000_000), "signed UPDATEs remembered to refuse replays")
    claims: bool = setting(
        True, kinds.boolean, "accept unsigned UPDATEs adding claims (first contact)")
    claim_max_ttl: float = setting(
        86400.0, kinds.duration(60, 7 * 86400), "longest a claim is kept")
    claim_rate: float = setting(
        0.5, kinds.number(0.001, 1_000_000), "claims per second into one mailbox")
    claim_burst: int = setting(
        30, kinds.integer(1, 1_000_000), "claim burst into one mailbox")
    claim_budget_rate: float = setting(
        20.0, kinds.number(0.001, 1_000_000), "claims per second into all mailboxes together")
    claim_budget_burst: int = setting(
        200, kinds.integer(1, 10_000_000), "claim burst into all mailboxes together")


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    zones: tuple = ()
    http: HttpConfig = field(default_factory=HttpConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    source: pathlib.Path | None = field(default=None, compare=False)


SECTIONS = {"node": NodeConfig, "store": StoreConfig, "dns": DnsConfig, "http": HttpConfig,
            "cluster": ClusterConfig, "registration": RegistrationConfig,
            "update": UpdateConfig}
TOP_LEVEL_KEYS = tuple(SECTIONS) + ("zones",)


def describe(cls) -> list[tuple[str, str, object, str]]:
    """``(key, kind, default, meaning)`` for every key of a section (docs and tests)."""
    return [(f.name, f.metadata["check"].describe, f.default, f.metadata["doc"])
            for f in dataclasses.fields(cls)]
