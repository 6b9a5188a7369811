"""The node configuration: one TOML file read once into frozen dataclasses (DESIGN.md §2).

Every key is optional and has its default on the dataclass field, so the code is the one
source of defaults; ``dmfdns/defaults/default.toml`` (embedded, used when no file is given)
and ``node/example.toml`` spell every key out and a test keeps all three equal.

Unknown keys anywhere are an error naming the key and the valid ones; every value is checked
for type and range, and a failure is one ``ConfigError`` line naming file, section and key.
Sizes accept a byte count or a string with a unit (``"1GiB"``, ``"64k"``); durations accept
seconds or a string with a unit (``"500ms"``, ``"10s"``, ``"5m"``, ``"1h"``, ``"1d"``), as
Knot and NSD operators expect (operators.md §2).

Paths: zone files given relatively are resolved against the directory of the config file
that names them; a relative ``data_dir`` is resolved against the current working directory.
This module is the only one allowed to read the environment; it reads only the user-side
client's variables (``client_environment``).
"""

import dataclasses
import ipaddress
import os
import pathlib
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources

from .proto.heartbeat import endpoint_problem

DEFAULT_CONFIG_NAME = "default.toml"
AUTH_MODES = ("open", "legacy", "multi-tenant")


class ConfigError(Exception):
    """An invalid configuration; the message is one line fit for an operator."""


# --- value checkers: (value, where) -> converted value, raising ConfigError -------------

def _fail(where: str, expected: str, value) -> None:
    raise ConfigError(f"{where}: must be {expected}, got {value!r}")


def _integer(lo: int, hi: int):
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            _fail(where, f"an integer from {lo} to {hi}", value)
        return value
    check.describe = f"integer {lo}..{hi}"
    return check


def _number(lo: float, hi: float):
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not lo <= value <= hi:
            _fail(where, f"a number from {lo:g} to {hi:g}", value)
        return float(value)
    check.describe = f"number {lo:g}..{hi:g}"
    return check


def _boolean(value, where):
    if not isinstance(value, bool):
        _fail(where, "true or false", value)
    return value


_boolean.describe = "boolean"

_SIZE = re.compile(r"\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)\s*", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(value) -> int | None:
    """Bytes from an integer or a string such as ``"512MiB"`` (binary units, as Knot)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match:
            return int(match.group(1)) * _SIZE_UNITS[match.group(2)[:1].lower()]
    return None


def _size(lo: int, hi: int):
    def check(value, where):
        size = parse_size(value)
        if size is None or not lo <= size <= hi:
            _fail(where, f"a size from {lo} to {hi} bytes (an integer or e.g. \"64MiB\")",
                  value)
        return size
    check.describe = f"size {lo}..{hi} bytes"
    return check


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value) -> float | None:
    """Seconds from a number or a string such as ``"500ms"``, ``"10s"``, ``"5m"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return None


def _duration(lo: float, hi: float):
    def check(value, where):
        seconds = parse_duration(value)
        if seconds is None or not lo <= seconds <= hi:
            _fail(where, f"a duration from {lo:g} s to {hi:g} s (seconds or e.g. \"10s\")",
                  value)
        return seconds
    check.describe = f"duration {lo:g}..{hi:g} s"
    return check


def _text(max_len: int, pattern: str | None = None, hint: str = ""):
    compiled = re.compile(pattern) if pattern else None

    def check(value, where):
        if not isinstance(value, str) or len(value) > max_len or not value.isprintable():
            _fail(where, f"a printable string of at most {max_len} characters", value)
        if compiled and not compiled.fullmatch(value):
            _fail(where, hint, value)
        return value
    check.describe = f"string (≤ {max_len})"
    return check


def _choice(*options: str):
    def check(value, where):
        if value not in options:
            _fail(where, "one of " + ", ".join(repr(o) for o in options), value)
        return value
    check.describe = " | ".join(options)
    return check


def _optional_path(value, where):
    if not isinstance(value, str):
        _fail(where, "a path string (\"\" for none)", value)
    return pathlib.Path(value) if value else None


_optional_path.describe = "path or \"\""


def _path(value, where):
    if not isinstance(value, str) or not value:
        _fail(where, "a non-empty path string", value)
    return pathlib.Path(value)


_path.describe = "path"


@dataclass(frozen=True, order=True)
class ListenAddress:
    """One ``host:port`` to bind; ``host`` is an IP literal (IPv6 without brackets)."""

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


def parse_listen(text) -> ListenAddress | None:
    """``"127.0.0.1:5353"`` or ``"[::1]:5353"`` → ListenAddress; None if malformed."""
    if not isinstance(text, str):
        return None
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:  # a bare IPv6 literal needs brackets to carry a port
            return None
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if text.startswith("[") != (address.version == 6):
        return None
    return ListenAddress(str(address), int(port))


def _listen_list(min_items: int):
    def check(value, where):
        if not isinstance(value, list) or len(value) < min_items:
            _fail(where, f"a list of at least {min_items} \"host:port\" strings", value)
        addresses = []
        for item in value:
            address = parse_listen(item)
            if address is None:
                _fail(where, "\"IPv4:port\" or \"[IPv6]:port\" with an IP literal and a "
                      "port 0-65535", item)
            addresses.append(address)
        if len(set(addresses)) != len(addresses):
            _fail(where, "a list without duplicates", value)
        return tuple(addresses)
    check.describe = "list of \"host:port\""
    return check


def _networks(value, where):
    if not isinstance(value, list):
        _fail(where, "a list of IP addresses or CIDR networks", value)
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except (TypeError, ValueError):
            _fail(where, "an IP address or CIDR network such as \"10.0.0.0/8\"", item)
    return tuple(networks)


_networks.describe = "list of CIDR"


def _setting(default, check, doc: str):
    return field(default=default, metadata={"check": check, "doc": doc})


# --- the sections -------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeConfig:
    node_id: str = _setting(
        "node1", _text(64, r"[A-Za-z0-9][A-Za-z0-9._-]*",
                       "letters, digits, '.', '_' or '-', starting with a letter or digit"),
        "this node's id in the change log and the cluster manifest")
    data_dir: pathlib.Path = _setting(
        pathlib.Path("dmfdns-data"), _path,
        "directory of the LMDB environment and the node lock (relative: to the working "
        "directory)")


@dataclass(frozen=True)
class StoreConfig:
    map_size: int = _setting(
        2**30, _size(2**20, 2**44), "LMDB map size: the most the store can hold")
    sweep_interval: float = _setting(
        60.0, _duration(0.1, 86400), "how often expired values and tombstones are removed")
    sweep_batch: int = _setting(
        1000, _integer(1, 1_000_000), "at most this many removed per sweep tick")


@dataclass(frozen=True)
class DnsConfig:
    listen: tuple = _setting(
        (ListenAddress("127.0.0.1", 5353),), _listen_list(1),
        "addresses served over both UDP and TCP")
    answer_ttl: int = _setting(
        60, _integer(0, 86400), "TTL of served TXT answers (never beyond a record's life)")
    udp_max_payload: int = _setting(
        1232, _integer(512, 4096), "largest UDP response with EDNS (RFC 6891, Flag Day 2020)")
    nsid: str = _setting("", _text(128), "NSID option value (RFC 5001); \"\" = none")
    server_id: str = _setting(
        "", _text(255), "answer to CH TXT id.server / hostname.bind; \"\" = REFUSED")
    version: str = _setting(
        "", _text(255), "answer to CH TXT version.bind / version.server; \"\" = REFUSED")
    tcp_idle_timeout: float = _setting(
        10.0, _duration(0.1, 3600), "close a TCP connection idle this long (RFC 7766 §6.2.3)")
    max_tcp_connections: int = _setting(
        100, _integer(1, 100_000), "open TCP connections per listener; more are refused")
    max_tcp_message: int = _setting(
        65535, _integer(12, 65535), "largest TCP query accepted (RFC 1035 §4.2.2 framing)")


@dataclass(frozen=True)
class ZoneSource:
    """One RFC 1035 zone file served by the node."""

    file: pathlib.Path


@dataclass(frozen=True)
class HttpConfig:
    listen: tuple = _setting(
        (ListenAddress("127.0.0.1", 8053),), _listen_list(0), "HTTP API addresses")
    auth_mode: str = _setting(
        "open", _choice(*AUTH_MODES),
        "write auth: open (anyone), legacy (operator token), multi-tenant (per-user tokens)")
    allow_open_non_loopback: bool = _setting(
        False, _boolean, "let auth_mode = \"open\" listen on a non-loopback address")
    operator_token: str = _setting(
        "", _text(512), "operator bearer token (prefer operator_token_file)")
    operator_token_file: pathlib.Path | None = _setting(
        None, _optional_path, "file whose first line is the operator token")
    rate_limit: float = _setting(
        100.0, _number(0, 1_000_000), "requests per second per client (0 = no limit)")
    rate_burst: int = _setting(
        1000, _integer(1, 10_000_000), "requests a client may make in one burst")
    trusted_proxies: tuple = _setting(
        (), _networks, "proxies whose X-Forwarded-For names the client")
    max_body_bytes: int = _setting(
        65536, _size(1024, 64 * 2**20), "largest request body accepted")
    max_connections: int = _setting(
        256, _integer(1, 100_000), "open HTTP connections; more are refused")
    idle_timeout: float = _setting(
        30.0, _duration(0.1, 3600), "close an HTTP connection idle this long")
    metrics_token: str = _setting(
        "", _text(512), "bearer token for /metrics; \"\" = open")


def _hex_key(value, where):
    if not isinstance(value, str) or (value and not re.fullmatch(r"[0-9a-fA-F]{64}", value)):
        _fail(where, "64 hex characters (an Ed25519 public key) or \"\"", value)
    return value.lower()


_hex_key.describe = "64 hex or \"\""


def _domain(value, where):
    if not isinstance(value, str) or (value and not re.fullmatch(
            r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
            r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?", value)) or len(value) > 64:
        _fail(where, "a DNS name of at most 64 characters or \"\"", value)
    return value.lower().rstrip(".")


_domain.describe = "DNS name or \"\""


def _url_list(value, where):
    if not isinstance(value, list) or len(value) > 32:
        _fail(where, "a list of at most 32 \"http(s)://host:port\" URLs", value)
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(r"https?://[^/\s?#]+/?", item):
            _fail(where, "an \"http(s)://host:port\" URL without a path", item)
    if len(set(value)) != len(value):
        _fail(where, "a list without duplicates", value)
    return tuple(item.rstrip("/") for item in value)


_url_list.describe = "list of URLs"


def _heartbeat_endpoint(value, where):
    if not isinstance(value, str):
        _fail(where, "an http(s)://host[:port] URL or \"\"", value)
    if value:
        problem = endpoint_problem(value)
        if problem:
            raise ConfigError(f"{where}: {problem} (a heartbeat endpoint names a real host, "
                              f"never a loopback or private address), got {value!r}")
    return value


_heartbeat_endpoint.describe = "URL or \"\""


@dataclass(frozen=True)
class ClusterConfig:
    """Replication between the nodes of one operator's cluster (docs/cluster.md)."""

    base: str = _setting(
        "", _domain, "cluster base domain: the manifest lives at cluster.<base>; \"\" = none")
    operator_key: str = _setting(
        "", _hex_key, "pinned operator public key (64 hex) that must sign the manifest")
    operator_key_file: pathlib.Path | None = _setting(
        None, _optional_path, "file holding the pinned operator public key (64 hex)")
    manifest_file: pathlib.Path | None = _setting(
        None, _optional_path, "file holding a signed manifest to adopt at start")
    sync_token: str = _setting(
        "", _text(512), "bearer token of /v1/sync/* and of calls to peers; \"\" = sync off")
    sync_token_file: pathlib.Path | None = _setting(
        None, _optional_path, "file whose first line is the sync token")
    peers: tuple = _setting(
        (), _url_list, "peer base URLs used while no manifest is adopted")
    sync_interval: float = _setting(
        10.0, _duration(0.05, 3600), "time between anti-entropy and gossip ticks")
    page_limit: int = _setting(
        1000, _integer(1, 10_000), "digest entries asked per page")
    max_pages_per_tick: int = _setting(
        100, _integer(1, 100_000), "digest pages read from one peer in one tick")
    max_records_per_tick: int = _setting(
        50_000, _integer(1, 10_000_000), "records pulled from one peer in one tick")
    tick_budget: float = _setting(
        5.0, _duration(0.05, 3600), "time one peer's sync may take in one tick")
    peer_timeout: float = _setting(
        5.0, _duration(0.05, 600), "timeout of one HTTP call to a peer")
    max_response_bytes: int = _setting(
        16 * 2**20, _size(2**16, 2**30), "largest peer response read; larger is dropped")
    fullset_interval: float = _setting(
        60.0, _duration(0.05, 86400), "how often the full-set bucket digests are compared")
    heartbeat_endpoint: str = _setting(
        "", _heartbeat_endpoint, "public http(s)://host[:port] announced in the heartbeat; "
        "\"\" = no heartbeat")
    heartbeat_key_file: pathlib.Path | None = _setting(
        None, _optional_path, "operator key seed file that signs the heartbeat")
    heartbeat_interval: float = _setting(
        300.0, _duration(1, 86400), "how often the heartbeat is re-signed and published")
    heartbeat_ttl: float = _setting(
        86400.0, _duration(60, 30 * 86400), "lifetime of a published heartbeat")


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    zones: tuple = ()
    http: HttpConfig = field(default_factory=HttpConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    source: pathlib.Path | None = field(default=None, compare=False)


SECTIONS = {"node": NodeConfig, "store": StoreConfig, "dns": DnsConfig, "http": HttpConfig,
            "cluster": ClusterConfig}
TOP_LEVEL_KEYS = tuple(SECTIONS) + ("zones",)


# --- loading ------------------------------------------------------------------------------

def load_config(path=None, *, cwd=None) -> Config:
    """The configuration in TOML file ``path``, or the embedded default when None.

    ``cwd`` (default: the process's working directory) anchors a relative ``data_dir``.
    Raises ConfigError with a one-line message.
    """
    if path is None:
        text, origin, base = _default_text()
    else:
        origin = pathlib.Path(path)
        try:
            text = origin.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{origin}: cannot read: {getattr(exc, 'strerror', exc)}") \
                from None
        base = origin.resolve().parent
    try:
        return parse_config(text, base=base, cwd=cwd, origin=origin)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def parse_config(text: str, *, base, cwd=None, origin=None) -> Config:
    """Parse TOML ``text``; relative zone and token files resolve against ``base``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from None
    _reject_unknown(data, TOP_LEVEL_KEYS, "top level")
    sections = {}
    for name, cls in SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table, got {table!r}")
        sections[name] = _load_section(cls, table, f"[{name}]")
    node = sections["node"]
    data_dir = pathlib.Path(cwd or pathlib.Path.cwd()) / node.data_dir
    sections["node"] = dataclasses.replace(node, data_dir=data_dir)
    base = pathlib.Path(base)
    http = sections["http"]
    if http.operator_token_file is not None:
        sections["http"] = dataclasses.replace(
            http, operator_token_file=base / http.operator_token_file)
    sections["cluster"] = _anchor_cluster_files(sections["cluster"], base)
    zones = _load_zones(data.get("zones", []), base)
    config = Config(zones=zones, source=origin, **sections)
    _check_http(config.http)
    return config


def defaults_dir() -> pathlib.Path:
    """The packaged ``dmfdns/defaults`` directory (default config and ``mesh.test`` zone)."""
    return pathlib.Path(str(resources.files("dmfdns") / "defaults"))


def _default_text():
    origin = defaults_dir() / DEFAULT_CONFIG_NAME
    return origin.read_text(encoding="utf-8"), origin, defaults_dir()


def _reject_unknown(table: dict, valid, where: str) -> None:
    for key in table:
        if key not in valid:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: "
                              + ", ".join(valid))


def _load_section(cls, table: dict, where: str):
    settings = dataclasses.fields(cls)
    _reject_unknown(table, [f.name for f in settings], where)
    values = {}
    for setting in settings:
        if setting.name in table:
            check = setting.metadata["check"]
            values[setting.name] = check(table[setting.name], f"{where} {setting.name}")
    return cls(**values)


def _load_zones(value, base: pathlib.Path) -> tuple:
    """``zones = ["a.zone", ...]`` or ``[[zones]] file = "a.zone"``."""
    if not isinstance(value, list):
        _fail("zones", "a list of zone file paths or [[zones]] tables", value)
    zones = []
    for index, item in enumerate(value):
        where = f"zones[{index}]"
        if isinstance(item, dict):
            _reject_unknown(item, ["file"], f"[[zones]] #{index + 1}")
            if "file" not in item:
                raise ConfigError(f"[[zones]] #{index + 1}: missing key 'file'")
            item = item["file"]
            where = f"[[zones]] #{index + 1} file"
        path = _path(item, where)
        zones.append(ZoneSource(file=(base / path).resolve()))
    if len({z.file for z in zones}) != len(zones):
        _fail("zones", "a list without duplicate files", value)
    return tuple(zones)


def _check_http(http: HttpConfig) -> None:
    """Refuse configurations that would run an unauthenticated or unusable write API."""
    public = [str(a) for a in http.listen if not a.is_loopback]
    if http.auth_mode == "open" and public and not http.allow_open_non_loopback:
        raise ConfigError(
            f"[http] auth_mode = \"open\" on non-loopback {', '.join(public)} lets anyone "
            "write; set auth_mode = \"legacy\" with an operator token, or "
            "allow_open_non_loopback = true")
    if http.operator_token and http.operator_token_file:
        raise ConfigError("[http]: set operator_token or operator_token_file, not both")
    if http.auth_mode in ("legacy", "multi-tenant") and not (
            http.operator_token or http.operator_token_file):
        raise ConfigError(f"[http] auth_mode = \"{http.auth_mode}\" needs operator_token or "
                          "operator_token_file")


def _anchor_cluster_files(cluster: ClusterConfig, base: pathlib.Path) -> ClusterConfig:
    """Cluster files given relatively are relative to the config file, like zone files."""
    files = {}
    for key in ("operator_key_file", "manifest_file", "sync_token_file", "heartbeat_key_file"):
        path = getattr(cluster, key)
        if path is not None:
            files[key] = pathlib.Path(base) / path
    if cluster.operator_key and cluster.operator_key_file:
        raise ConfigError("[cluster]: set operator_key or operator_key_file, not both")
    if cluster.sync_token and cluster.sync_token_file:
        raise ConfigError("[cluster]: set sync_token or sync_token_file, not both")
    if bool(cluster.heartbeat_endpoint) != bool(cluster.heartbeat_key_file):
        raise ConfigError("[cluster]: heartbeat_endpoint and heartbeat_key_file go together")
    return dataclasses.replace(cluster, **files)


def _first_line(path: pathlib.Path, what: str) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"[cluster] {what} {path}: cannot read: "
                          f"{getattr(exc, 'strerror', exc)}") from None
    text = lines[0].strip() if lines else ""
    if not text:
        raise ConfigError(f"[cluster] {what} {path} is empty")
    return text


def read_sync_token(cluster: ClusterConfig) -> str:
    """The sync bearer token, from the config or the first line of its file ("" = none)."""
    if cluster.sync_token_file is None:
        return cluster.sync_token
    return _first_line(cluster.sync_token_file, "sync_token_file")


def read_operator_key(cluster: ClusterConfig) -> bytes | None:
    """The pinned operator public key (32 bytes), or None when none is configured."""
    text = cluster.operator_key
    if cluster.operator_key_file is not None:
        text = _first_line(cluster.operator_key_file, "operator_key_file")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raise ConfigError(f"[cluster] operator_key_file {cluster.operator_key_file}: "
                              "must hold 64 hex characters (a public key)")
    return bytes.fromhex(text) if text else None


def read_manifest_wire(cluster: ClusterConfig) -> str | None:
    """The signed manifest of ``manifest_file`` (its first line), or None."""
    if cluster.manifest_file is None:
        return None
    return _first_line(cluster.manifest_file, "manifest_file")


def read_operator_token(http: HttpConfig) -> str:
    """The operator token, from the config or the first line of its token file."""
    if http.operator_token_file is None:
        return http.operator_token
    try:
        lines = http.operator_token_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"[http] operator_token_file {http.operator_token_file}: "
                          f"cannot read: {getattr(exc, 'strerror', exc)}") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise ConfigError(f"[http] operator_token_file {http.operator_token_file} is empty")
    return token


def describe(cls) -> list[tuple[str, str, object, str]]:
    """``(key, kind, default, meaning)`` for every key of a section (docs and tests)."""
    return [(f.name, f.metadata["check"].describe, f.default, f.metadata["doc"])
            for f in dataclasses.fields(cls)]


# --- the user-side client's environment (DESIGN.md section 7) ----------------------------

@dataclass(frozen=True)
class ClientEnvironment:
    """Where the client keeps a user's state and where its passphrase may come from.

    ``home`` is ``$DMFDNS_HOME``, else ``$XDG_CONFIG_HOME/dmfdns``, else
    ``~/.config/dmfdns``. The passphrase comes from ``$DMFDNS_PASSPHRASE``, else the file
    named by ``$DMFDNS_PASSPHRASE_FILE``; the CLI prompts when neither is set.
    """

    home: pathlib.Path
    passphrase: str | None = field(default=None, repr=False)
    passphrase_file: pathlib.Path | None = None


def client_environment(environ=None) -> ClientEnvironment:
    """The client settings read from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    home = env.get("DMFDNS_HOME")
    if not home:
        base = env.get("XDG_CONFIG_HOME") or str(pathlib.Path(env.get("HOME") or "~")
                                                  .expanduser() / ".config")
        home = str(pathlib.Path(base) / "dmfdns")
    passphrase_file = env.get("DMFDNS_PASSPHRASE_FILE")
    return ClientEnvironment(
        home=pathlib.Path(home).expanduser(),
        passphrase=env.get("DMFDNS_PASSPHRASE") or None,
        passphrase_file=pathlib.Path(passphrase_file).expanduser() if passphrase_file else None)
