"""``dmfdns zone check FILE``: validate one RFC 1035 zone file without starting a node."""

import collections
import pathlib

from dnslib import QTYPE

from ..dns.zone import ZoneError, parse_zone
from . import CommandError, read_utf8


def register(sub) -> None:
    zone = sub.add_parser("zone", help="zone file tools")
    actions = zone.add_subparsers(dest="zone_command", metavar="ACTION")
    actions.required = True
    check = actions.add_parser(
        "check", help="validate a zone file; print its SOA serial and record counts")
    check.add_argument("file", metavar="FILE", help="RFC 1035 master file")
    check.add_argument("--origin", metavar="ZONE",
                       help="the zone's apex, if the file has no $ORIGIN or absolute names")
    check.set_defaults(handler=check_zone)


def read_zone(path, origin: str | None = None):
    """The parsed zone in file ``path``; CommandError with the file and line on failure."""
    path = pathlib.Path(path)
    text = read_utf8(path, "zone file")
    try:
        return parse_zone(text, origin=origin, source=str(path))
    except ZoneError as exc:
        raise CommandError(str(exc)) from None


def check_zone(args, ctx) -> int:
    zone = read_zone(args.file, args.origin)
    by_type = collections.Counter()
    for (_, rtype), rrset in zone.rrsets.items():
        by_type[QTYPE.get(rtype)] += len(rrset)
    counts = ", ".join(f"{name} {count}" for name, count in sorted(by_type.items()))
    print(f"{args.file}: zone {zone.origin} OK", file=ctx.stdout)
    print(f"serial {zone.serial}, negative TTL {zone.negative_ttl} s", file=ctx.stdout)
    print(f"{sum(by_type.values())} records in {len(zone.rrsets)} RRsets ({counts})",
          file=ctx.stdout)
    return 0
