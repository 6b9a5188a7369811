"""Reload a running node (SIGHUP, ``systemctl reload``): re-read the configuration and the
files it names, apply what can change safely, and keep running on the old configuration
when the new one is bad (layer 3).

What a reload applies, from the next query or request on:

* the zone files (``zones`` and each file's content): the responder serves the new zones,
  admission and DNS UPDATE accept names in them, zone transfers carry the new content of
  the zones they already served (a zone added or removed gets or loses its transfer
  policy at the next restart);
* ``[dns]`` ``answer_ttl``, ``nsid``, ``server_id``, ``version``;
* the operator token (``[http] operator_token`` / ``operator_token_file``);
* ``[store] sweep_batch``;
* the TLS certificate and key files (HTTPS, DNS over TLS), always re-read.

Any other key that differs is reported as needing a restart and keeps its old value (the
listeners, the data directory, the map size, the cluster...). A configuration that does not
load, or a file that does not read or parse, changes nothing: the node goes on with what it
has and says why, in one line, as ``dmfdns check-config`` would.

Every change is logged, one line each (``reload: ...``), so an operator can see in the
journal what a reload did.
"""

import dataclasses
from dataclasses import dataclass, field

from twisted.logger import Logger

from .config import Config, ConfigError, load_config
from .dns.zone import ZoneError
from .node_dns import responder_settings
from .node_dnssec import zone_signers
from .node_resign import resign_interval
from .node_files import read_node_files
from .node_lock import NodeError

log = Logger(namespace="dmfdns.server")

# (section, key) the reload applies; the zones are compared by content, not by key.
APPLIED = {("dns", "answer_ttl"), ("dns", "nsid"), ("dns", "server_id"), ("dns", "version"),
           ("http", "operator_token"), ("http", "operator_token_file"),
           ("store", "sweep_batch"), ("http", "tls_cert_file"), ("http", "tls_key_file"),
           ("zones", "")}


@dataclass
class ReloadResult:
    """What one reload did: ``error`` (None when it applied), the changes applied and the
    keys that differ but need a restart."""

    error: str | None = None
    applied: list = field(default_factory=list)
    restart_needed: list = field(default_factory=list)


def reload_node(node, path) -> ReloadResult:
    """Reload ``node`` from the configuration file ``path`` (None: the embedded default)."""
    try:
        config = load_config(path)
        files = read_node_files(config)
    except (ConfigError, ZoneError, OSError) as exc:
        result = ReloadResult(error=str(exc))
        log.error("reload refused, still running on the previous configuration: {error}",
                  error=result.error)
        return result
    result = ReloadResult()
    result.restart_needed = [key for key in changed_keys(node.config, config)
                             if key not in APPLIED]
    try:
        result.applied = _apply(node, config, files)
    except ValueError as exc:
        result.error = str(exc)
        log.error("reload refused, still running on the previous configuration: {error}",
                  error=result.error)
        return result
    if getattr(node, "workers", None) is not None and any(
            line.startswith("zone ") for line in result.applied):
        # The DNS worker processes answer from the zones they were started with.
        result.restart_needed.append(("dns", "workers (they serve the zones of the start)"))
    _report(result)
    result.applied += node.reload_certificates()      # logs its own lines
    return result


def changed_keys(old: Config, new: Config) -> list[tuple[str, str]]:
    """``(section, key)`` of every setting that differs; ``("zones", "")`` for the list."""
    changed = [("zones", "")] if old.zones != new.zones else []
    for section in dataclasses.fields(old):
        before, after = getattr(old, section.name), getattr(new, section.name)
        if not dataclasses.is_dataclass(before):
            continue
        changed += [(section.name, key.name) for key in dataclasses.fields(before)
                    if getattr(before, key.name) != getattr(after, key.name)]
    return changed


def _apply(node, config: Config, files) -> list[str]:
    """Swap in what may change; ValueError (from the responder) before anything changed."""
    old_config, old_files = node.config, node.files
    responder = node.responder
    settings = dataclasses.replace(
        responder_settings(config, responder.settings.cookie_secret),
        update_enabled=responder.settings.update_enabled,
        cache_entries=responder.settings.cache_entries,
        cache_bytes=responder.settings.cache_bytes)
    try:        # keys added since (dmfdns dnssec keygen) or zones newly signed
        signers = zone_signers(config, files.zones, node.reactor.seconds())
    except NodeError as exc:
        raise ValueError(str(exc)) from None
    for origin, signer in signers.items():
        if origin in responder.signers:
            signer.adopt_counts(responder.signers[origin])
    responder.reconfigure(list(files.zones), settings, signers)
    if node.store.sign_blob is not None:
        node.store.sign_blob.configure(files.zones, settings.answer_ttl)
    if getattr(node, "resigner", None) is not None:     # new keys or zones: re-sign now
        node.resigner.interval = resign_interval(responder.signers)
        node.resigner.poke()
    applied = _zone_changes(old_files.zones, files.zones)
    applied += _setting_changes(old_config, config)
    node.writes.zones = files.origins
    node.key_schedule.config, node.key_schedule.zones = config, list(files.zones)
    if responder.update is not None:
        responder.update.zones = {zone.origin: zone for zone in files.zones}
    transfers = getattr(responder, "transfers", None)
    if transfers is not None:       # the new content of zones it transfers already
        transfers.zones.update({zone.origin: zone for zone in files.zones
                                if zone.origin in transfers.zones})
    if files.operator_token != old_files.operator_token:
        node.http.records.auth.set_operator_token(files.operator_token)
        applied.append("operator token changed")
    node.sweeper.batch = config.store.sweep_batch
    applied_config = _keep_unapplied(old_config, config)
    node.config = applied_config
    node.files = dataclasses.replace(old_files, zones=files.zones,
                                     operator_token=files.operator_token)
    node.zones = list(files.zones)
    return applied


def _zone_changes(old_zones, new_zones) -> list[str]:
    before = {zone.origin: zone for zone in old_zones}
    after = {zone.origin: zone for zone in new_zones}
    lines = [f"zone {origin} added (serial {after[origin].serial})"
             for origin in after if origin not in before]
    lines += [f"zone {origin} removed" for origin in before if origin not in after]
    for origin in after:
        if origin in before and _content(before[origin]) != _content(after[origin]):
            lines.append(f"zone {origin} reloaded (serial {before[origin].serial} -> "
                         f"{after[origin].serial})")
    return lines


def _content(zone) -> tuple:
    """What a zone serves, comparable (zones themselves compare by identity)."""
    return (str(zone.soa), tuple(sorted((key, tuple(str(rr) for rr in rrset))
                                        for key, rrset in zone.rrsets.items())))


def _setting_changes(old: Config, new: Config) -> list[str]:
    lines = []
    for section, key in changed_keys(old, new):
        if (section, key) in APPLIED and section != "zones" and "token" not in key:
            before = getattr(getattr(old, section), key)
            after = getattr(getattr(new, section), key)
            lines.append(f"[{section}] {key}: {before!r} -> {after!r}")
    return lines


def _keep_unapplied(old: Config, new: Config) -> Config:
    """``new`` with every key the reload does not apply put back to its ``old`` value, so
    the node's config says what it runs with."""
    sections = {}
    for section in dataclasses.fields(old):
        before, after = getattr(old, section.name), getattr(new, section.name)
        if not dataclasses.is_dataclass(before):
            continue
        kept = {key.name: getattr(before, key.name) for key in dataclasses.fields(before)
                if (section.name, key.name) not in APPLIED}
        sections[section.name] = dataclasses.replace(after, **kept)
    return dataclasses.replace(new, **sections)


def _report(result: ReloadResult) -> None:
    for line in result.applied:
        log.info("reload: {line}", line=line)
    for section, key in result.restart_needed:
        log.warn("reload: [{section}] {key} changed; it takes effect at the next restart "
                 "(the node keeps the old value)", section=section, key=key)
    if not result.applied and not result.restart_needed:
        log.info("reload: nothing changed")
