"""Zone transfers and NOTIFY for a node (layer 3, used by ``read_node_files`` and
``make_service``).

``transfer_policies`` reads every zone's TSIG key file with the node's other files, before
anything is locked, so a bad key file is a ConfigError naming it; ``make_transfers`` builds
the ``Transfers`` the responder and the TCP listeners share; ``make_notifier`` the NOTIFY
service for the zones that name secondaries.
"""

import ipaddress

from .config import Config, ConfigError
from .dns import tsig
from .dns.notifier import Notifier
from .dns.xfr import TransferCounters, TransferPolicy, Transfers


def read_tsig_key(path) -> tsig.TsigKey:
    """The key in ``path``: one line ``algorithm:name:base64``; ConfigError otherwise."""
    try:
        lines = path.read_text(encoding="ascii").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"TSIG key file {path}: cannot read: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    if len(lines) != 1:
        raise ConfigError(f"TSIG key file {path}: expected one line "
                          "'hmac-sha256:<key name>:<base64 secret>'")
    try:
        return tsig.parse_key_line(lines[0])
    except ValueError as exc:
        raise ConfigError(f"TSIG key file {path}: {exc}") from None


def transfer_policies(config: Config, zones) -> dict:
    """``{origin: TransferPolicy}`` for the zones that allow transfers or name secondaries."""
    policies = {}
    for source, zone in zip(config.zones, zones):
        if not (source.transfer_allow or source.notify):
            continue
        key = read_tsig_key(source.tsig_key_file) if source.tsig_key_file else None
        policies[zone.origin] = TransferPolicy(
            allow=tuple(ipaddress.ip_network(n) for n in source.transfer_allow),
            keys=(key,) if key is not None else (),
            notify=tuple((target.host, target.port) for target in source.notify),
            notify_key=key)
    return policies


def journal_limit(config: Config, policies: dict) -> int:
    """The store keeps the IXFR journal only while some zone can be transferred."""
    return config.store.journal_max_changes if policies else 0


def make_transfers(config: Config, zones, policies: dict, store) -> Transfers | None:
    if not policies:
        return None
    return Transfers(zones, policies, store, ttl=config.dns.answer_ttl,
                     edns_payload=config.dns.udp_max_payload, counters=TransferCounters())


def make_notifier(reactor, store, zones, policies: dict) -> Notifier | None:
    """The NOTIFY service, None when no zone names secondaries. Its socket of each address
    family binds to loopback when every secondary of that family is on loopback."""
    targets = [(zone, policies[zone.origin]) for zone in zones
               if zone.origin in policies and policies[zone.origin].notify]
    if not targets:
        return None
    addresses = [ipaddress.ip_address(host) for _, policy in targets
                 for host, _ in policy.notify]
    binds = {}
    for version, loopback, anywhere in ((4, "127.0.0.1", "0.0.0.0"), (6, "::1", "::")):
        family = [a for a in addresses if a.version == version]
        binds[version] = loopback if all(a.is_loopback for a in family) else anywhere
    return Notifier(reactor, store, targets, bind_hosts=binds)
