"""The zones' DNSSEC keys in the data directory, their schedule, and the signers the
responder uses (docs/operator-guide.md, "DNSSEC").

Each signed zone keeps its keys in ``<data_dir>/dnssec/<origin>/`` (mode 0700): per key a
PKCS#8 PEM file ``k<tag>-<algorithm>.pem`` and its timing metadata ``k<tag>-<algorithm>.json``
(both mode 0600), for example::

    {"role": "zsk", "created": 1800000000, "publish": 1800000000, "active": 1800003900,
     "retire": null, "remove": null, "ds_seen": null}

(seconds since the epoch; ``dns.key_schedule`` says what each time means). A PEM file with
no metadata is a CSK published and signing since the epoch. A zone with ``dnssec = true``
and no key gets its keys (``dnssec_keys``: one CSK, or a KSK and a ZSK) of its
``dnssec_algorithm`` when the node first starts, or from ``dmfdns dnssec keygen``.

The running node (and each DNS worker) re-reads the key directory every ``KEY_TICK``
seconds and swaps in a new signer when the keys published, signing or listed in CDS at
that instant differ from the ones it serves, so a rollover step planned for a time, or a
command run beside the node, takes effect without a restart.
"""

import base64
import dataclasses
import json
import os
import pathlib

from twisted.logger import Logger

from .config import Config
from .dns import dnssec, key_schedule
from .dns.key_schedule import KeyTimes, Timings
from .dns.signer import SigningSettings, ZoneSigner
from .node_lock import NodeError

KEY_TICK = 1.0          # seconds between two looks at the key directories
TIME_FIELDS = ("created", "publish", "active", "retire", "remove", "ds_seen")
log = Logger(namespace="dmfdns.dnssec")


@dataclasses.dataclass(frozen=True)
class ManagedKey:
    """A zone key and its planned times."""

    key: dnssec.ZoneKey
    times: KeyTimes
    path: pathlib.Path


def key_dir(data_dir: pathlib.Path, origin: str) -> pathlib.Path:
    return pathlib.Path(data_dir) / "dnssec" / origin


def load_managed(data_dir: pathlib.Path, origin: str) -> list[ManagedKey]:
    """The zone's keys with their times, in file-name order; NodeError for a file that is
    not a key or metadata that does not parse."""
    keys = []
    for path in sorted(key_dir(data_dir, origin).glob("*.pem")):
        try:
            times = _read_times(path.with_suffix(".json"))
            role = times["role"] if times else dnssec.CSK
            key = dnssec.ZoneKey.from_pem(path.read_bytes(), role)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NodeError(f"DNSSEC key {path}: {exc}") from None
        if times is None:
            meta = KeyTimes(key.tag, key.role, 0, publish=0, active=0)
        else:
            meta = KeyTimes(key.tag, key.role, **{name: times.get(name)
                                                  for name in TIME_FIELDS})
        keys.append(ManagedKey(key, meta, path))
    return keys


def _read_times(path: pathlib.Path) -> dict | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("role") not in dnssec.ROLE_FLAGS:
        raise ValueError(f"{path.name}: role must be csk, ksk or zsk")
    for name in TIME_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], (int, float)):
            raise ValueError(f"{path.name}: {name} must be a number or null")
    if data.get("created") is None:
        raise ValueError(f"{path.name}: no created time")
    return data


def load_keys(data_dir: pathlib.Path, origin: str) -> list[dnssec.ZoneKey]:
    """The zone's keys, in file-name order (every state)."""
    return [managed.key for managed in load_managed(data_dir, origin)]


def write_times(managed: ManagedKey, times: KeyTimes) -> None:
    """Replace ``managed``'s metadata with ``times`` (mode 0600, atomically: a node
    reading the directory sees the old file or the new one)."""
    data = {"role": times.role, **{name: getattr(times, name) for name in TIME_FIELDS}}
    _write_private(managed.path.with_suffix(".json"),
                   (json.dumps(data, indent=1) + "\n").encode("ascii"), replace=True)


def _write_private(path: pathlib.Path, data: bytes, *, replace: bool) -> None:
    target = path.with_name(path.name + ".tmp") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if replace:
        os.replace(target, path)


def generate_key(data_dir: pathlib.Path, origin: str, algorithm: str, role: str,
                 plan) -> ManagedKey:
    """A new key of ``role`` for ``origin``; ``plan(tag) -> KeyTimes`` gives its times.
    Both files are written with mode 0600 before the key is used."""
    key = dnssec.ZoneKey.generate(dnssec.ALGORITHMS[algorithm], role)
    folder = key_dir(data_dir, origin)
    path = folder / f"k{key.tag:05d}-{key.algorithm}.pem"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        managed = ManagedKey(key, plan(key.tag), path)
        # The times first: a node reading the directory meanwhile ignores a .json alone,
        # but would take a .pem alone for a CSK in use.
        write_times(managed, managed.times)
        _write_private(path, key.to_pem(), replace=False)
    except OSError as exc:
        raise NodeError(f"cannot write a DNSSEC key in {folder}: {exc.strerror}") from None
    return managed


def first_keys(data_dir, origin: str, algorithm: str, layout: str, now: float) -> list:
    """A new zone's keys for ``layout`` (``csk`` or ``ksk-zsk``), in use from ``now``."""
    roles = (dnssec.CSK,) if layout == "csk" else (dnssec.KSK, dnssec.ZSK)
    return [generate_key(data_dir, origin, algorithm, role,
                         lambda tag, role=role: key_schedule.initial(tag, role, now))
            for role in roles]


def save_plan(keys: list[ManagedKey], planned: list[KeyTimes]) -> None:
    """Write the times that changed."""
    by_tag = {managed.times.tag: managed for managed in keys}
    for times in planned:
        managed = by_tag.get(times.tag)
        if managed is not None and managed.times != times:
            try:
                write_times(managed, times)
            except OSError as exc:
                raise NodeError(f"cannot write {managed.path}: {exc.strerror}") from None


def retire_key(data_dir: pathlib.Path, origin: str, tag: int, now: float) -> pathlib.Path:
    """Move the key with ``tag`` (and its metadata) to ``retired/`` (kept, no longer
    loaded); NodeError when there is no such key or the zone could not sign at ``now``
    without it."""
    keys = load_managed(data_dir, origin)
    matches = [managed for managed in keys if managed.key.tag == tag]
    if not matches:
        raise NodeError(f"{origin} has no DNSSEC key with tag {tag}")
    try:
        signer_at((), [managed for managed in keys if managed.key.tag != tag],
                  SigningSettings(), now)
    except NodeError:
        raise NodeError(f"{origin} cannot sign without key {tag}; add its successor first "
                        "(dmfdns dnssec rollover)") from None
    path = matches[0].path
    retired = path.parent / "retired"
    try:
        retired.mkdir(mode=0o700, exist_ok=True)
        if path.with_suffix(".json").exists():
            path.with_suffix(".json").rename(retired / path.with_suffix(".json").name)
        return path.rename(retired / path.name)
    except OSError as exc:
        raise NodeError(f"cannot retire {path}: {exc.strerror}") from None


def signer_at(apex, keys: list[ManagedKey], settings: SigningSettings,
              now: float) -> ZoneSigner:
    """The signer of the keys' state at ``now``; NodeError when no key could sign."""
    def pick(test):
        return [managed.key for managed in keys if test(managed.times)]
    try:
        return ZoneSigner(apex, pick(lambda t: t.signing(now)), settings,
                          published=pick(lambda t: t.published(now)),
                          cds=pick(lambda t: t.in_cds(now)))
    except ValueError as exc:
        raise NodeError(f"zone {'.'.join(l.decode() for l in apex)}: {exc} at this time "
                        "(see dmfdns dnssec status)") from None


def signing_counts(signers: dict) -> dict:
    """``{origin: {"made", "hits", "entries"}}`` of ``signers``: what a DNS worker reports
    to the main process each second."""
    return {origin: {"made": signer.signatures_made, "hits": signer.cache_hits,
                     "entries": signer.cached_signatures}
            for origin, signer in signers.items()}


def signing_settings(source) -> SigningSettings:
    return SigningSettings(validity=int(source.dnssec_validity),
                           refresh=int(source.dnssec_refresh))


def zone_keys(config: Config, source, zone, now: float, *, create: bool) -> list:
    """The zone's managed keys; a zone without keys gets its first ones when ``create``
    (the main process), else NodeError."""
    keys = load_managed(config.node.data_dir, zone.origin)
    if not keys:
        if not create:
            raise NodeError(f"zone {zone.origin} is signed but has no DNSSEC key")
        keys = first_keys(config.node.data_dir, zone.origin, source.dnssec_algorithm,
                          source.dnssec_keys, now)
    return keys


def zone_signers(config: Config, zones, now: float, *, create: bool = True) -> dict:
    """``{origin: ZoneSigner}`` at ``now`` for every zone with ``dnssec = true``."""
    signers = {}
    for source, zone in zip(config.zones, zones):
        if source.dnssec:
            keys = zone_keys(config, source, zone, now, create=create)
            signers[zone.origin] = signer_at(tuple(zone.labels), keys,
                                             signing_settings(source), now)
    return signers


def zone_timings(source, zone, answer_ttl: int) -> Timings:
    """The zone's RFC 7583 variables: TTLkey is the SOA TTL (DNSKEY is served with it),
    TTLsig the longest TTL the zone serves (its records, stored TXT values, denials), Dprp
    the configured propagation plus ``KEY_TICK`` (a step reaches every DNS process of
    this node within one tick)."""
    ttls = [rr.ttl for rrset in zone.rrsets.values() for rr in rrset]
    return Timings(dnskey_ttl=zone.soa.ttl,
                   max_ttl=max(ttls + [zone.soa.ttl, answer_ttl, zone.negative_ttl]),
                   ds_ttl=int(source.dnssec_ds_ttl),
                   propagation=source.dnssec_propagation + KEY_TICK,
                   parent_propagation=source.dnssec_parent_propagation,
                   publish_safety=source.dnssec_publish_safety,
                   retire_safety=source.dnssec_retire_safety)


def presentation(origin: str, keys, ttl: int) -> list[str]:
    """The DS and DNSKEY records of the SEP ``keys`` (ZoneKey) for the parent, in
    master-file form (RFC 4034 sections 2.2, 5.3)."""
    apex = tuple(label.encode("ascii") for label in origin.split("."))
    sep = [key for key in keys if key.sep]
    lines = []
    for key in sep:
        ds = dnssec.ds_rdata(apex, key)
        lines.append(f"{origin}. {ttl} IN DS {key.tag} {key.algorithm} "
                     f"{dnssec.DIGEST_SHA256} {ds[4:].hex().upper()}")
    for key in sep:
        public = base64.b64encode(key.public).decode("ascii")
        lines.append(f"{origin}. {ttl} IN DNSKEY {key.flags} 3 {key.algorithm} {public}")
    return lines


class KeySchedule:
    """Keeps the responder's signers in step with the key directories (``tick`` every
    ``KEY_TICK`` seconds, with the time passed in). ``config`` and ``zones`` are replaced
    by a reload."""

    def __init__(self, config: Config, zones, responder):
        self.config = config
        self.zones = list(zones)
        self.responder = responder
        self._seen = {}             # origin -> the directory listing last read
        self._keys = {}             # origin -> [ManagedKey] of that listing
        self._errors = {}           # origin -> the error last logged (logged once)

    def tick(self, now: float) -> None:
        for source, zone in zip(self.config.zones, self.zones):
            if not source.dnssec:
                continue
            try:
                keys = self._read(zone.origin)
                signer = signer_at(tuple(zone.labels), keys, signing_settings(source), now)
            except NodeError as exc:     # keep signing with what it has; say why, once
                if self._errors.get(zone.origin) != str(exc):
                    log.error("dnssec: {error}", error=str(exc))
                self._errors[zone.origin] = str(exc)
                continue
            self._errors.pop(zone.origin, None)
            current = self.responder.signers.get(zone.origin)
            if current is None or current.state() != signer.state():
                if current is not None:
                    signer.adopt_counts(current)
                self.responder.set_signer(zone.origin, signer)
                log.info("dnssec: {zone}: keys {tags} signing, DNSKEY has {count}",
                         zone=zone.origin, tags=[k.tag for k in signer.keys],
                         count=len(signer.dnskey))

    def _read(self, origin: str) -> list[ManagedKey]:
        folder = key_dir(self.config.node.data_dir, origin)
        try:
            listing = sorted((entry.name, entry.stat().st_mtime_ns)
                             for entry in os.scandir(folder))
        except OSError as exc:
            raise NodeError(f"cannot read {folder}: {exc.strerror}") from None
        if self._seen.get(origin) != listing:
            self._keys[origin] = load_managed(self.config.node.data_dir, origin)
            self._seen[origin] = listing
        return self._keys[origin]
