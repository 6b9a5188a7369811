"""``dmfdns dnssec keygen|ds``: a signed zone's keys (``node_dnssec``) and the DS and DNSKEY
records its parent needs (docs/operator-guide.md, "DNSSEC")."""

from ..config import ConfigError
from ..dns.signer import ZoneSigner
from ..dns.zone import ZoneError
from ..node_dnssec import generate_key, load_keys, presentation, retire_key
from ..node_files import load_zones
from ..node_lock import NodeError
from . import CommandError
from .serve import load

DS_TTL = 3600


def register(sub) -> None:
    group = sub.add_parser("dnssec", help="DNSSEC keys of a signed zone, DS for the parent")
    actions = group.add_subparsers(dest="dnssec_command", metavar="ACTION")
    actions.required = True
    common = {"metavar": "FILE", "help": "node configuration (default: the embedded one)"}

    keygen = actions.add_parser("keygen", help="create the zone's signing key (CSK)")
    keygen.add_argument("--config", **common)
    keygen.add_argument("zone", metavar="ZONE")
    keygen.add_argument("--algorithm", choices=("ed25519", "ecdsap256sha256"),
                        help="default: the zone's dnssec_algorithm")
    keygen.add_argument("--add", action="store_true",
                        help="add a key beside the existing ones (a rollover)")
    keygen.set_defaults(handler=keygen_command)

    retire = actions.add_parser(
        "retire", help="stop publishing and signing with a key (the last step of a rollover)")
    retire.add_argument("--config", **common)
    retire.add_argument("zone", metavar="ZONE")
    retire.add_argument("tag", metavar="KEY_TAG", type=int)
    retire.set_defaults(handler=retire_command)

    ds = actions.add_parser("ds", help="print the DS and DNSKEY records for the parent")
    ds.add_argument("--config", **common)
    ds.add_argument("zone", metavar="ZONE")
    ds.set_defaults(handler=ds_command)


def _zone(args):
    """``(config, zone source, parsed zone)`` of the zone named ``args.zone``."""
    config = load(args.config)
    origin = args.zone.rstrip(".").lower()
    try:
        zones = load_zones(config)
    except (ConfigError, ZoneError) as exc:
        raise CommandError(str(exc)) from None
    for source, zone in zip(config.zones, zones):
        if zone.origin == origin:
            return config, source, zone
    raise CommandError(f"{origin} is not a zone of this configuration")


def keygen_command(args, ctx) -> int:
    config, source, zone = _zone(args)
    try:
        existing = load_keys(config.node.data_dir, zone.origin)
        if existing and not args.add:
            raise CommandError(f"{zone.origin} already has {len(existing)} key(s); "
                               "--add makes another (a rollover)")
        key = generate_key(config.node.data_dir, zone.origin,
                           args.algorithm or source.dnssec_algorithm)
    except NodeError as exc:
        raise CommandError(str(exc)) from None
    print(f"{zone.origin}: key {key.tag} (algorithm {key.algorithm}) created", file=ctx.stderr)
    if not source.dnssec:
        print(f"dmfdns: warning: {zone.origin} has dnssec = false in the configuration",
              file=ctx.stderr)
    return 0


def ds_command(args, ctx) -> int:
    config, _, zone = _zone(args)
    try:
        keys = load_keys(config.node.data_dir, zone.origin)
    except NodeError as exc:
        raise CommandError(str(exc)) from None
    if not keys:
        raise CommandError(f"{zone.origin} has no DNSSEC key: run 'dmfdns dnssec keygen "
                           f"{zone.origin}' or start the node with dnssec = true")
    signer = ZoneSigner(zone.labels, keys)
    for line in presentation(zone.origin, signer, DS_TTL):
        print(line, file=ctx.stdout)
    return 0


def retire_command(args, ctx) -> int:
    config, _, zone = _zone(args)
    try:
        path = retire_key(config.node.data_dir, zone.origin, args.tag)
    except NodeError as exc:
        raise CommandError(str(exc)) from None
    print(f"{zone.origin}: key {args.tag} retired to {path}; reload the node (SIGHUP)",
          file=ctx.stderr)
    return 0
