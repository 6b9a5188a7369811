"""The zones' DNSSEC keys in the data directory and the signers the responder uses.

Each signed zone keeps its keys in ``<data_dir>/dnssec/<origin>/`` (mode 0700), one PKCS#8
PEM file per key named ``k<tag>-<algorithm>.pem`` (mode 0600). A zone with ``dnssec = true``
and no key gets one combined signing key (CSK, flags 257: RFC 6781 section 3.1) of its
``dnssec_algorithm`` when the node first starts, or from ``dmfdns dnssec keygen``.
"""

import base64
import os
import pathlib

from .config import Config
from .dns import dnssec
from .dns.signer import SigningSettings, ZoneSigner
from .node_lock import NodeError


def key_dir(data_dir: pathlib.Path, origin: str) -> pathlib.Path:
    return pathlib.Path(data_dir) / "dnssec" / origin


def load_keys(data_dir: pathlib.Path, origin: str) -> list[dnssec.ZoneKey]:
    """The zone's keys, in file-name order; NodeError for a file that is not a key."""
    keys = []
    for path in sorted(key_dir(data_dir, origin).glob("*.pem")):
        try:
            keys.append(dnssec.ZoneKey.from_pem(path.read_bytes()))
        except (OSError, dnssec.DnssecKeyError) as exc:
            raise NodeError(f"DNSSEC key {path}: {exc}") from None
    return keys


def generate_key(data_dir: pathlib.Path, origin: str, algorithm: str) -> dnssec.ZoneKey:
    """A new CSK for ``origin``, written with mode 0600 before it is used."""
    key = dnssec.ZoneKey.generate(dnssec.ALGORITHMS[algorithm])
    folder = key_dir(data_dir, origin)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"k{key.tag:05d}-{key.algorithm}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.to_pem())
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise NodeError(f"cannot write a DNSSEC key in {folder}: {exc.strerror}") from None
    return key


def retire_key(data_dir: pathlib.Path, origin: str, tag: int) -> pathlib.Path:
    """Move the key with ``tag`` to ``retired/`` (kept, no longer loaded); NodeError when
    there is no such key or it is the zone's last."""
    folder = key_dir(data_dir, origin)
    keys = list(zip(sorted(folder.glob("*.pem")), load_keys(data_dir, origin)))
    matches = [path for path, key in keys if key.tag == tag]
    if not matches:
        raise NodeError(f"{origin} has no DNSSEC key with tag {tag}")
    if len(keys) == 1:
        raise NodeError(f"key {tag} is the last key of {origin}; add its successor first "
                        "(dmfdns dnssec keygen --add)")
    retired = folder / "retired"
    try:
        retired.mkdir(mode=0o700, exist_ok=True)
        return matches[0].rename(retired / matches[0].name)
    except OSError as exc:
        raise NodeError(f"cannot retire {matches[0]}: {exc.strerror}") from None


def zone_signers(config: Config, zones, *, create: bool = True) -> dict:
    """``{origin: ZoneSigner}`` for every zone configured with ``dnssec = true``; a zone
    without keys gets one when ``create`` (the main process), else NodeError."""
    signers = {}
    for source, zone in zip(config.zones, zones):
        if not source.dnssec:
            continue
        keys = load_keys(config.node.data_dir, zone.origin)
        if not keys:
            if not create:
                raise NodeError(f"zone {zone.origin} is signed but has no DNSSEC key")
            keys = [generate_key(config.node.data_dir, zone.origin,
                                 source.dnssec_algorithm)]
        settings = SigningSettings(validity=int(source.dnssec_validity),
                                   refresh=int(source.dnssec_refresh))
        signers[zone.origin] = ZoneSigner(tuple(zone.labels), keys, settings)
    return signers


def presentation(origin: str, signer: ZoneSigner, ttl: int) -> list[str]:
    """The DS and DNSKEY records for the parent, in master-file form (RFC 4034
    sections 2.2, 5.3)."""
    lines = []
    for key in signer.keys:
        ds = dnssec.ds_rdata(signer.apex, key)
        lines.append(f"{origin}. {ttl} IN DS {key.tag} {key.algorithm} "
                     f"{dnssec.DIGEST_SHA256} {ds[4:].hex().upper()}")
    for key in signer.keys:
        public = base64.b64encode(key.public).decode("ascii")
        lines.append(f"{origin}. {ttl} IN DNSKEY {key.flags} 3 {key.algorithm} {public}")
    return lines
