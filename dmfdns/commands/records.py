"""``dmfdns records put|delete|list|import``: the operator's direct view of the store.

The node is the single writer of its LMDB environment (docs/decisions.md §3). Writes here take
the data directory's lock (``dmfdns.node.NodeLock``) and refuse while a running node holds it —
write through the node's HTTP API then. ``list`` opens the store read-only and works at any
time. Every write goes through the node's one write service (``dmfdns.store.writes``), with the
same admission as an HTTP write (docs/decisions.md §6.2): names canonical and inside a served
zone, the reference's caps, and v=dmp1 records that parse and verify at their owner names (a
prekey against the identity stored, or imported earlier, for its name hash) — so nothing enters
the store that a peer would refuse in sync.
"""

import argparse
import json
import pathlib
import time

from dnslib import QTYPE

from ..config import ConfigError, read_operator_key
from ..proto.names import canonical, within
from ..dns.zone import ZoneError, parse_zone
from ..node_files import load_zones
from ..node_lock import NodeLock, NodeLocked
from ..node_store import open_store
from ..proto import admission
from ..store.api import Cursor, StoreError
from ..store.changelog import STABLE_HORIZON_MS
from ..store.writes import DELETE, PUBLISH, WriteRequest, WriteService
from . import CommandError, read_utf8
from .serve import load

DEFAULT_TTL = 300            # the reference's default for POST /v1/records
MAX_TTL = admission.Limits().max_ttl
LIST_PAGE = 1000


def register(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="node configuration (TOML); default: the embedded one")
    records = sub.add_parser("records", help="put, delete, list or import TXT records")
    actions = records.add_subparsers(dest="records_command", metavar="ACTION")
    actions.required = True

    put = actions.add_parser("put", parents=[common], help="add a value to a name")
    put.add_argument("name", metavar="NAME")
    put.add_argument("value", metavar="VALUE")
    put.add_argument("--ttl", type=_ttl, default=DEFAULT_TTL, metavar="SECONDS",
                     help=f"lifetime in seconds (default {DEFAULT_TTL})")
    put.set_defaults(handler=put_record)

    delete = actions.add_parser("delete", parents=[common],
                                help="delete one value of a name, or all its values")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("value", metavar="VALUE", nargs="?")
    delete.set_defaults(handler=delete_record)

    listing = actions.add_parser("list", parents=[common],
                                 help="list live records (read-only; safe while serving)")
    listing.add_argument("prefix", metavar="PREFIX", nargs="?", default="",
                         help="only names starting with this text")
    listing.set_defaults(handler=list_records)

    load_file = actions.add_parser(
        "import", parents=[common],
        help="import JSON lines {\"name\",\"value\",\"ttl\"} or a zone file's TXT records")
    load_file.add_argument("file", metavar="FILE")
    load_file.add_argument("--ttl", type=_ttl, default=DEFAULT_TTL, metavar="SECONDS",
                           help="lifetime of JSON lines without a ttl "
                                f"(default {DEFAULT_TTL})")
    load_file.add_argument("--origin", metavar="ZONE",
                           help="apex of a zone file without $ORIGIN or absolute names")
    load_file.set_defaults(handler=import_records)


def _ttl(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_TTL:
        raise argparse.ArgumentTypeError(f"must be whole seconds from 1 to {MAX_TTL}")
    return int(text)


# --- helpers --------------------------------------------------------------------------------

class _Target:
    """What a records command needs from the configuration: zones and the data dir."""

    def __init__(self, args):
        self.config = load(args.config)
        self.embedded = args.config is None
        try:
            self.origins = [zone.origin for zone in load_zones(self.config)]
            self.operator_key = read_operator_key(self.config.cluster)
        except (ZoneError, ConfigError) as exc:
            raise CommandError(str(exc)) from None

    def owner(self, name, where: str = "") -> str:
        text = canonical(name)
        if text is None:
            raise CommandError(f"{where}invalid record name {str(name)[:80]!r}")
        if not any(within(text, origin) for origin in self.origins):
            zones = ", ".join(self.origins) or "none configured"
            raise CommandError(f"{where}{text} is outside the served zones ({zones})")
        return text

    def write_service(self, store) -> WriteService:
        return WriteService(store, zones=self.origins, operator_key=self.operator_key,
                            cluster_base=self.config.cluster.base or None)

    def writer(self):
        """Lock the data directory and open the store for writing; (lock, store). Without
        --config only an existing store is written: a typo'd or forgotten --config must not
        quietly create a new store in the working directory."""
        data_dir = self.config.node.data_dir
        if self.embedded and not (data_dir / "data.mdb").exists():
            raise CommandError(f"no store at {data_dir} (the embedded default's data_dir); "
                               "give the node's configuration with --config FILE")
        try:
            lock = NodeLock(self.config.node.data_dir).acquire("records")
        except NodeLocked as exc:
            raise CommandError(f"{exc}; refusing to write behind its back: write through "
                               "its HTTP API (POST /v1/records/NAME) or stop it first") \
                from None
        try:
            return lock, open_store(self.config)
        except StoreError as exc:
            lock.release()
            raise CommandError(str(exc)) from None


def _admit_all(target: _Target, store, now: float, triples) -> list:
    """The store ops of ``(name, value, ttl, where)`` writes admitted by the node's write
    service (each sees those before it: one import cannot overfill an RRset, and the
    identities it carries verify its prekeys); the first refusal is a CommandError."""
    service = target.write_service(store)
    requests = [WriteRequest(PUBLISH, name, value, ttl) for name, value, ttl, _ in triples]
    results = service.admit(requests, now=now, path="cli")
    for (name, _, _, where), result in zip(triples, results):
        if isinstance(result, admission.Refusal):
            where = where or f"{canonical(name) or name}: "
            raise CommandError(f"{where}refused: {result.message}")
    return results


def _write(target: _Target, operation):
    lock, store = target.writer()
    try:
        return operation(store)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
        lock.release()


def _check_value(value, where: str = "") -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        raise CommandError(f"{where}a value is printable ASCII text")
    return value


# --- put / delete -------------------------------------------------------------------------

def put_record(args, ctx) -> int:
    target = _Target(args)
    name = target.owner(args.name)
    value = _check_value(args.value)

    def put(store):
        accepted = _admit_all(target, store, ctx.now, [(name, value, args.ttl, "")])
        return target.write_service(store).commit(accepted, now=ctx.now)[0]
    changed = _write(target, put)
    verb = "stored" if changed else "unchanged (already stored with a later expiry)"
    print(f"{name}: {verb}, ttl {args.ttl} s", file=ctx.stdout)
    return 0


def delete_record(args, ctx) -> int:
    target = _Target(args)
    name = target.owner(args.name)
    value = None if args.value is None else _check_value(args.value)
    def delete(store):
        service = target.write_service(store)
        outcome = service.write([WriteRequest(DELETE, name, value)], now=ctx.now, path="cli")
        refusal = outcome.refusals[0] if outcome.refusals else None
        if refusal is not None:
            raise CommandError(f"{name}: refused: {refusal.message}")
        return outcome.changed[0]
    removed = _write(target, delete)
    if not removed:
        what = "does not hold that value" if value is not None else "holds no value"
        raise CommandError(f"{name} {what}; nothing deleted")
    print(f"{name}: deleted {removed} value{'s' if removed != 1 else ''}", file=ctx.stdout)
    return 0


# --- list ---------------------------------------------------------------------------------

def live_changes(store, now: float):
    """Every live ``(name, value)`` in the store, from its change log (which keeps one
    entry per pair). The log hides entries younger than its stable horizon from peers and
    may run a few milliseconds ahead of the clock (one tick per commit); an operator wants
    to see everything, so read as of one horizon plus a second later and drop what is
    expired now. (Values expiring within that margin are left out.)"""
    cursor = Cursor()
    later = now + STABLE_HORIZON_MS / 1000 + 1.0
    while True:
        page = store.changes_after(cursor, LIST_PAGE, now=later, tombstones=False)
        for change in page.changes:
            if change.expiry > now:
                yield change
        if not page.has_more or page.next_cursor == cursor:
            return
        cursor = page.next_cursor


def list_records(args, ctx) -> int:
    config = load(args.config)
    prefix = args.prefix.lower()
    try:
        store = open_store(config, readonly=True)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    try:
        found = sorted((c.name, c.value, c.expiry) for c in live_changes(store, ctx.now)
                       if c.name.startswith(prefix))
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    for name, value, expiry in found:
        print(f"{name}\t{int(expiry - ctx.now)}\t{value}", file=ctx.stdout)
    names = len({name for name, _, _ in found})
    print(f"{len(found)} value{'s' if len(found) != 1 else ''} at {names} "
          f"name{'s' if names != 1 else ''}", file=ctx.stderr)
    return 0


# --- import -------------------------------------------------------------------------------

def import_records(args, ctx) -> int:
    target = _Target(args)
    path = pathlib.Path(args.file)
    text = read_utf8(path)
    if text.lstrip().startswith("{"):
        triples = _json_lines(text, path, args.ttl, target)
    else:
        triples = _zone_txt(text, path, args.origin, target)
    started = time.perf_counter()

    def put_all(store):
        accepted = _admit_all(target, store, ctx.now, triples)
        return sum(target.write_service(store).commit(accepted, now=ctx.now))
    changed = _write(target, put_all)
    seconds = max(time.perf_counter() - started, 1e-9)
    print(f"imported {len(triples)} records ({changed} changed) in {seconds:.3f} s "
          f"({len(triples) / seconds:,.0f} records/s)", file=ctx.stdout)
    return 0


def _json_lines(text: str, path, default_ttl: int, target: _Target) -> list:
    triples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}: "
        try:
            record = json.loads(line)
        except ValueError:
            raise CommandError(f"{where}not a JSON object") from None
        if not isinstance(record, dict):
            raise CommandError(f"{where}not a JSON object")
        unknown = set(record) - {"name", "value", "ttl"}
        if unknown:
            raise CommandError(f"{where}unknown field {sorted(unknown)[0]!r}; fields are "
                               "name, value, ttl")
        if not isinstance(record.get("name"), str) or "value" not in record:
            raise CommandError(f"{where}\"name\" and \"value\" (strings) are required")
        ttl = record.get("ttl", default_ttl)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL:
            raise CommandError(f"{where}\"ttl\" must be whole seconds from 1 to {MAX_TTL}")
        triples.append((target.owner(record["name"], where),
                        _check_value(record["value"], where), ttl, where))
    return triples


def _zone_txt(text: str, path, origin, target: _Target) -> list:
    try:
        zone = parse_zone(text, origin=origin, source=str(path))
    except ZoneError as exc:
        raise CommandError(f"{exc} (import reads JSON lines, or a zone file with its SOA "
                           "and NS)") from None
    triples = []
    for (name, rtype), rrset in zone.rrsets.items():
        if rtype != QTYPE.TXT:
            continue
        for rr in rrset:
            where = f"{path}: {name}: "
            try:
                value = b"".join(rr.rdata.data).decode("ascii")
            except UnicodeDecodeError:
                raise CommandError(f"{where}TXT value is not ASCII") from None
            triples.append((target.owner(name, where), _check_value(value, where),
                            max(rr.ttl, 1), where))
    if not triples:
        raise CommandError(f"{path}: no TXT records to import")
    return triples
