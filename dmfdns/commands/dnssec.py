"""``dmfdns dnssec keygen|ds|rollover|ds-seen|status|retire``: a signed zone's keys
(``node_dnssec``), the DS and DNSKEY records its parent needs, and the two rollovers of
RFC 7583 (``dns.key_schedule``), planned from the zone's TTLs and timing settings and
carried out by the running node at their times (docs/operator-guide.md, "DNSSEC")."""

import datetime

from ..config import ConfigError
from ..dns import dnssec, key_schedule
from ..dns.zone import ZoneError
from ..node_dnssec import (first_keys, generate_key, load_managed, presentation,
                           retire_key, save_plan, zone_timings)
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

    def action(name, handler, help_text, *arguments, first=()):
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("--config", **common)
        for args, kwargs in first:
            parser.add_argument(*args, **kwargs)
        parser.add_argument("zone", metavar="ZONE")
        for args, kwargs in arguments:
            parser.add_argument(*args, **kwargs)
        parser.set_defaults(handler=handler)

    tag = (("tag",), {"metavar": "KEY_TAG", "type": int})
    action("keygen", keygen_command,
           "create the zone's keys (one CSK or a KSK and a ZSK: dnssec_keys)",
           (("--algorithm",), {"choices": ("ed25519", "ecdsap256sha256"),
                               "help": "default: the zone's dnssec_algorithm"}),
           (("--add",), {"action": "store_true",
                         "help": "add a CSK signing at once beside the existing keys"}))
    action("ds", ds_command, "print the DS and DNSKEY records for the parent")
    action("rollover", rollover_command,
           "start a ZSK (pre-publish) or KSK/CSK (double-DS) rollover",
           first=[(("role",), {"choices": (dnssec.ZSK, dnssec.KSK, dnssec.CSK)})])
    action("ds-seen", ds_seen_command,
           "say the parent now publishes the new key's DS (double-DS, step 2)", tag)
    action("status", status_command, "each key's state and the next rollover steps")
    action("retire", retire_command,
           "move a key out of the zone now (manual; prefer rollover)", tag)


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


def _managed(config, zone) -> list:
    try:
        return load_managed(config.node.data_dir, zone.origin)
    except NodeError as exc:
        raise CommandError(str(exc)) from None


def keygen_command(args, ctx) -> int:
    config, source, zone = _zone(args)
    algorithm = args.algorithm or source.dnssec_algorithm
    existing = _managed(config, zone)
    try:
        if existing and not args.add:
            raise CommandError(f"{zone.origin} already has {len(existing)} key(s); "
                               "'dmfdns dnssec rollover' replaces them")
        if args.add and source.dnssec_keys != "csk":
            raise CommandError("--add makes a CSK; a KSK/ZSK zone rolls its keys with "
                               "'dmfdns dnssec rollover'")
        if args.add:
            made = [generate_key(config.node.data_dir, zone.origin, algorithm, dnssec.CSK,
                                 lambda tag: key_schedule.initial(tag, dnssec.CSK, ctx.now))]
        else:
            made = first_keys(config.node.data_dir, zone.origin, algorithm,
                              source.dnssec_keys, ctx.now)
    except NodeError as exc:
        raise CommandError(str(exc)) from None
    for managed in made:
        key = managed.key
        print(f"{zone.origin}: {key.role.upper()} {key.tag} (algorithm {key.algorithm}) "
              "created", file=ctx.stderr)
    if not source.dnssec:
        print(f"dmfdns: warning: {zone.origin} has dnssec = false in the configuration",
              file=ctx.stderr)
    return 0


def ds_command(args, ctx) -> int:
    config, _, zone = _zone(args)
    keys = [managed.key for managed in _managed(config, zone)
            if managed.times.in_cds(ctx.now)]
    if not keys:
        raise CommandError(f"{zone.origin} has no DNSSEC key: run 'dmfdns dnssec keygen "
                           f"{zone.origin}' or start the node with dnssec = true")
    for line in presentation(zone.origin, keys, DS_TTL):
        print(line, file=ctx.stdout)
    return 0


def rollover_command(args, ctx) -> int:
    config, source, zone = _zone(args)
    keys = _managed(config, zone)
    times = [managed.times for managed in keys]
    timings = zone_timings(source, zone, config.dns.answer_ttl)
    role, now = args.role, ctx.now
    try:
        if role == dnssec.ZSK:      # check before making the key
            key_schedule.roll_zsk(times, 0, now, timings)
        else:
            key_schedule.roll_sep(times, role, 0, now)
        made = generate_key(config.node.data_dir, zone.origin, source.dnssec_algorithm,
                            role, lambda tag: _planned(times, role, tag, now, timings)[-1])
        save_plan(keys, _planned(times, role, made.key.tag, now, timings))
    except (key_schedule.RolloverError, NodeError) as exc:
        raise CommandError(f"{zone.origin}: {exc}") from None
    print(f"{zone.origin}: new {role.upper()} {made.key.tag} created", file=ctx.stderr)
    if role != dnssec.ZSK:
        print("Give the parent this DS beside the current one, then run "
              f"'dmfdns dnssec ds-seen {zone.origin} {made.key.tag}' once it serves both:",
              file=ctx.stderr)
        for line in presentation(zone.origin, [made.key], DS_TTL)[:1]:
            print(line, file=ctx.stdout)
    _print_plan(ctx, zone.origin, load_managed(config.node.data_dir, zone.origin), timings)
    return 0


def _planned(times, role, tag, now, timings):
    if role == dnssec.ZSK:
        return key_schedule.roll_zsk(times, tag, now, timings)
    return key_schedule.roll_sep(times, role, tag, now)


def ds_seen_command(args, ctx) -> int:
    config, source, zone = _zone(args)
    keys = _managed(config, zone)
    timings = zone_timings(source, zone, config.dns.answer_ttl)
    try:
        save_plan(keys, key_schedule.ds_seen([m.times for m in keys], args.tag, ctx.now,
                                             timings))
    except (key_schedule.RolloverError, NodeError) as exc:
        raise CommandError(f"{zone.origin}: {exc}") from None
    _print_plan(ctx, zone.origin, load_managed(config.node.data_dir, zone.origin), timings)
    return 0


def status_command(args, ctx) -> int:
    config, source, zone = _zone(args)
    keys = _managed(config, zone)
    if not keys:
        raise CommandError(f"{zone.origin} has no DNSSEC key")
    _print_plan(ctx, zone.origin, keys, zone_timings(source, zone, config.dns.answer_ttl))
    return 0


def _print_plan(ctx, origin, keys, timings) -> None:
    """Each key's state and times, the timing variables, and the next steps."""
    now, out = ctx.now, ctx.stdout
    print(f"zone {origin} at {_when(now)}", file=out)
    for managed in keys:
        times = managed.times
        planned = ", ".join(f"{name} {_when(getattr(times, name))}"
                            for name in ("publish", "active", "retire", "remove", "ds_seen")
                            if getattr(times, name) is not None)
        print(f"  {times.role.upper()} {times.tag} (algorithm {managed.key.algorithm}): "
              f"{times.state(now)}" + (f"; {planned}" if planned else ""), file=out)
    print(f"  timings: DNSKEY TTL {timings.dnskey_ttl} s, longest TTL {timings.max_ttl} s, "
          f"DS TTL {timings.ds_ttl} s; Ipub {timings.ipub:g} s, Iret {timings.iret:g} s, "
          f"parent IpubP {timings.ipub_parent:g} s", file=out)
    steps = key_schedule.next_steps([managed.times for managed in keys], now)
    if not steps:
        print("  next: nothing planned", file=out)
    for when, what in steps:
        print(f"  next: {'now, by you' if when is None else _when(when)}: "
              f"{what.replace('ZONE', origin)}", file=out)


def _when(seconds: float) -> str:
    if seconds <= 0:
        return "always"
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def retire_command(args, ctx) -> int:
    config, _, zone = _zone(args)
    try:
        path = retire_key(config.node.data_dir, zone.origin, args.tag, ctx.now)
    except NodeError as exc:
        raise CommandError(str(exc)) from None
    print(f"{zone.origin}: key {args.tag} retired to {path}; a running node stops using "
          "it within a second", file=ctx.stderr)
    return 0
