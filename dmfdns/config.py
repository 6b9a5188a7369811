"""The node configuration: one TOML file read once into frozen dataclasses (docs/decisions.md §2).

Every key is optional and has its default on the dataclass field, so the code is the one
source of defaults; ``dmfdns/defaults/default.toml`` (embedded, used when no file is given)
and ``node/example.toml`` spell every key out and a test keeps all three equal.

Unknown keys anywhere are an error naming the key and the valid ones; every value is checked
for type and range (the readers in ``config_values``: sizes and durations take units), and a
failure is one ``ConfigError`` line naming file, section and key.

Paths: zone files given relatively are resolved against the directory of the config file
that names them; a relative ``data_dir`` is resolved against the current working directory.
This module is the only one allowed to read the environment; it reads only the user-side
client's variables (``client_environment``).
"""

import dataclasses
import os
import pathlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources

from . import config_values as kinds
# ConfigError, ListenAddress and the unit parsers stay importable from here (re-exported).
from .config_values import (  # noqa: F401
    ConfigError, ListenAddress, parse_duration, parse_size)
# The sections and the file readers stay importable from here: ``dmfdns.config`` is the API.
from .config_sections import (  # noqa: F401
    AUTH_MODES, DNSSEC_ALGORITHMS, DNSSEC_KEY_LAYOUTS, DNSSEC_TIMINGS, SECTIONS,
    TOP_LEVEL_KEYS, ZONE_KEYS, ClusterConfig, Config, DnsConfig, HttpConfig, NodeConfig,
    RegistrationConfig, StoreConfig, UpdateConfig, ZoneSource, describe)
from .config_files import (  # noqa: F401
    read_manifest_wire, read_operator_key, read_operator_token, read_sync_token)

DEFAULT_CONFIG_NAME = "default.toml"


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
    sections["http"] = _anchor(sections["http"], base, HTTP_FILES)
    sections["cluster"] = _anchor_cluster_files(sections["cluster"], base)
    zones = _load_zones(data.get("zones", []), base)
    config = Config(zones=zones, source=origin, **sections)
    _check_http(config.http)
    _check_registration(config)
    if config.cluster.require_client_certificate and not config.http.tls_client_ca_file:
        raise ConfigError("[cluster] require_client_certificate needs [http] "
                          "tls_client_ca_file (the CA that signs the peers' certificates)")
    if config.dns.tls_listen and not config.http.tls_cert_file:
        raise ConfigError("[dns] tls_listen needs [http] tls_cert_file and tls_key_file")
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
        kinds.fail("zones", "a list of zone file paths or [[zones]] tables", value)
    zones = []
    for index, item in enumerate(value):
        if isinstance(item, dict):
            zones.append(_zone_table(item, f"[[zones]] #{index + 1}", base))
        else:
            file = kinds.path(item, f"zones[{index}]")
            zones.append(ZoneSource(file=(base / file).resolve()))
    if len({z.file for z in zones}) != len(zones):
        kinds.fail("zones", "a list without duplicate files", value)
    return tuple(zones)


def _zone_table(item: dict, where: str, base: pathlib.Path) -> ZoneSource:
    _reject_unknown(item, ZONE_KEYS, where)
    if "file" not in item:
        raise ConfigError(f"{where}: missing key 'file'")
    file = (base / kinds.path(item["file"], f"{where} file")).resolve()
    allow = kinds.networks(item.get("transfer_allow", []), f"{where} transfer_allow")
    notify = kinds.listen_list(0)(item.get("notify", []), f"{where} notify")
    if any(address.port == 0 for address in notify):
        raise ConfigError(f"{where} notify: a secondary's port cannot be 0")
    key_file = item.get("tsig_key_file")
    if key_file is not None:
        key_file = (base / kinds.path(key_file, f"{where} tsig_key_file")).resolve()
    return ZoneSource(file=file, transfer_allow=allow, tsig_key_file=key_file,
                      notify=notify, **_zone_dnssec(item, where))


def _zone_dnssec(item: dict, where: str) -> dict:
    """The zone's DNSSEC keys: refresh must come round before the signatures expire."""
    values = {
        "dnssec": kinds.boolean(item.get("dnssec", False), f"{where} dnssec"),
        "dnssec_algorithm": kinds.choice(*DNSSEC_ALGORITHMS)(
            item.get("dnssec_algorithm", "ed25519"), f"{where} dnssec_algorithm"),
        "dnssec_validity": kinds.duration(3600, 2**31 - 1)(
            item.get("dnssec_validity", "14d"), f"{where} dnssec_validity"),
        "dnssec_refresh": kinds.duration(60, 2**31 - 1)(
            item.get("dnssec_refresh", "1d"), f"{where} dnssec_refresh"),
        "dnssec_keys": kinds.choice(*DNSSEC_KEY_LAYOUTS)(
            item.get("dnssec_keys", "csk"), f"{where} dnssec_keys"),
    }
    for key, default in DNSSEC_TIMINGS.items():
        values[key] = kinds.duration(0, 2**31 - 1)(item.get(key, default), f"{where} {key}")
    if values["dnssec_refresh"] * 2 > values["dnssec_validity"]:
        raise ConfigError(f"{where}: dnssec_refresh must be at most half of "
                          "dnssec_validity, so every signature is re-made before it expires")
    return values


def _check_http(http: HttpConfig) -> None:
    """Refuse configurations that would run an unauthenticated or unusable write API."""
    public = [str(a) for a in http.listen + http.tls_listen if not a.is_loopback]
    if http.auth_mode == "open" and public and not http.allow_open_non_loopback:
        raise ConfigError(
            f"[http] auth_mode = \"open\" on non-loopback {', '.join(public)} lets anyone "
            "write; set auth_mode = \"legacy\" with an operator token, or "
            "allow_open_non_loopback = true")
    if http.operator_token and http.operator_token_file:
        raise ConfigError("[http]: set operator_token or operator_token_file, not both")
    if bool(http.tls_cert_file) != bool(http.tls_key_file):
        raise ConfigError("[http]: tls_cert_file and tls_key_file go together")
    if http.tls_listen and not http.tls_cert_file:
        raise ConfigError("[http] tls_listen needs tls_cert_file and tls_key_file")
    if http.auth_mode in ("legacy", "multi-tenant") and not (
            http.operator_token or http.operator_token_file):
        raise ConfigError(f"[http] auth_mode = \"{http.auth_mode}\" needs operator_token or "
                          "operator_token_file")


def _check_registration(config: Config) -> None:
    registration = config.registration
    if not registration.enabled:
        return
    if config.http.auth_mode != "multi-tenant":
        raise ConfigError("[registration] enabled needs [http] auth_mode = \"multi-tenant\"")
    if not registration.node_hostname:
        raise ConfigError("[registration] enabled needs node_hostname (the host name clients "
                          "sign into their registration)")


HTTP_FILES = ("operator_token_file", "tls_cert_file", "tls_key_file", "tls_client_ca_file")
CLUSTER_FILES = ("operator_key_file", "manifest_file", "sync_token_file", "heartbeat_key_file",
                 "ca_file", "client_cert_file", "client_key_file")


def _anchor(section, base: pathlib.Path, keys):
    """Files given relatively are relative to the config file, like zone files."""
    files = {key: pathlib.Path(base) / getattr(section, key) for key in keys
             if getattr(section, key) is not None}
    return dataclasses.replace(section, **files)


def _anchor_cluster_files(cluster: ClusterConfig, base: pathlib.Path) -> ClusterConfig:
    cluster = _anchor(cluster, base, CLUSTER_FILES)
    cluster = dataclasses.replace(cluster, peer_ca_files=tuple(
        (origin, pathlib.Path(base) / path) for origin, path in cluster.peer_ca_files))
    if cluster.operator_key and cluster.operator_key_file:
        raise ConfigError("[cluster]: set operator_key or operator_key_file, not both")
    if cluster.sync_token and cluster.sync_token_file:
        raise ConfigError("[cluster]: set sync_token or sync_token_file, not both")
    if bool(cluster.heartbeat_endpoint) != bool(cluster.heartbeat_key_file):
        raise ConfigError("[cluster]: heartbeat_endpoint and heartbeat_key_file go together")
    if bool(cluster.client_cert_file) != bool(cluster.client_key_file):
        raise ConfigError("[cluster]: client_cert_file and client_key_file go together")
    return cluster


# --- the user-side client's environment (docs/decisions.md §7) ----------------------------

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


SERVICE_MANAGER_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def service_manager_environment(environ=None) -> dict:
    """The variables systemd sets for the notification protocol (sd_notify(3)); the node's
    configuration is the file, these only say where to tell systemd it is ready."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in SERVICE_MANAGER_VARIABLES if name in env}
