"""The JSON of ``/v1/sync/*`` both ways: what a node serves and what it accepts from a peer.

The reference shapes (docs/compatibility.md §2.3) are exact: a digest page is
``{"records": [{"name", "hash", "ts", "ttl"}], "has_more", "next_cursor"}`` and a pull answer
``{"records": [{"name", "value", "ttl"}]}``. A dmfdns peer asks for more with the request
header ``X-Dmfdns-Sync: 1`` and the answer carries the same header back; only then do
entries and records gain ``deleted``, ``written_ms``, ``origin`` and ``expiry_ms`` (the
change's version and absolute expiry, so tombstones replicate and last-writer-wins works
across nodes) and digests include tombstones. A ``dnsmesh`` peer never sends the header and
sees exactly the reference's shapes.

Everything from a peer is checked here before anything else looks at it. A parse never
raises: a malformed page is None, a bad entry is dropped with a reason (a bounded set of
labels, for the rejected-records metric).
"""

import math
import re
from dataclasses import dataclass

from ..proto.names import canonical
from ..proto import prefixes
from ..store.api import Change, ChangesPage, Cursor
from ..store.changelog import format_cursor, parse_cursor

CAPABILITY_HEADER = "X-Dmfdns-Sync"
CAPABILITY = "1"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_PULL_NAMES = 256            # the reference's cap per pull request
MAX_FUTURE_MS = 60_000          # a peer's times may run this far ahead of ours
MAX_TTL = 2 ** 31
MAX_ORIGIN = 255
TTL_SLACK_MS = 5_000            # a peer's expiry must beat ours by this much to be pulled
_NAME = re.compile(r"[a-zA-Z0-9._-]{1,253}")     # the reference's digest name rule
_HASH = re.compile(r"[0-9a-f]{64}")

# Reasons a peer's entry, record or page is refused (labels of the rejected metric; the
# admission reasons of dmfdns.proto.admission join them for values that fail admission).
BAD_ENTRY = "bad_entry"
FUTURE = "future"
OUT_OF_ORDER = "out_of_order"
OVERSIZED_PAGE = "oversized_page"
BAD_CURSOR = "bad_cursor"
UNREQUESTED = "unrequested"
UNADVERTISED = "unadvertised"
HASH_MISMATCH = "hash_mismatch"
BAD_RECORD = "bad_record"
MISSING = "missing"
STORE = "store"
MALFORMED = "malformed"
WIRE_REASONS = (BAD_ENTRY, FUTURE, OUT_OF_ORDER, OVERSIZED_PAGE, BAD_CURSOR, UNREQUESTED,
                UNADVERTISED, HASH_MISMATCH, BAD_RECORD, MISSING, STORE, MALFORMED)


def remaining_ttl(expiry: float, now: float) -> int:
    """The reference's ``ttl``: whole seconds of life left, at least 1."""
    return max(1, math.ceil(expiry - now))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- serving ------------------------------------------------------------------------------

def change_entry(change: Change, now: float, extended: bool) -> dict:
    """One digest entry for ``change``."""
    entry = {"name": change.name, "hash": change.value_hash, "ts": change.ts_ms,
             "ttl": remaining_ttl(change.expiry, now)}
    if extended:
        entry.update(_version_fields(change))
    return entry


def _version_fields(change: Change) -> dict:
    written = change.ts_ms if change.written_ms is None else change.written_ms
    return {"deleted": change.deleted, "written_ms": written, "origin": change.origin,
            "expiry_ms": round(change.expiry * 1000)}


def digest_body(page: ChangesPage, cursor: Cursor, now: float, extended: bool) -> dict:
    """The digest answer; ``next_cursor`` echoes ``cursor`` when nothing was scanned.

    A ``dnsmesh`` peer refuses every heartbeat value in sync, and a refused entry pins its
    cursor, so nothing more than a page beyond it ever replicates (docs/compatibility.md §3,
    "Stall bug"): its digest leaves heartbeats out. ``next_cursor`` still passes them.
    """
    next_cursor = page.next_cursor if page.changes or page.next_cursor != cursor else cursor
    changes = page.changes if extended else [
        c for c in page.changes if not c.value.startswith(prefixes.HEARTBEAT)]
    return {"records": [change_entry(c, now, extended) for c in changes],
            "has_more": page.has_more, "next_cursor": format_cursor(next_cursor)}


def pulled_record(change: Change, now: float, extended: bool) -> dict:
    record = {"name": change.name, "value": change.value,
              "ttl": remaining_ttl(change.expiry, now)}
    if extended:
        record["hash"] = change.value_hash
        record.update(_version_fields(change))
    return record


def parse_limit(text: str | None) -> int | None:
    """The digest ``limit``: default 1000, clamped to 10000; None when not a positive
    integer (the reference answers 400)."""
    if text is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,12}", text.strip()) or int(text) <= 0:
        return None
    return min(int(text), MAX_LIMIT)


def parse_pull_request(body: dict):
    """``(names, hashes)`` of a pull body, or an error text (the reference's wording).

    ``hashes`` (a dmfdns extension) narrows the answer to those value hashes; None = all.
    """
    names = body.get("names")
    if not isinstance(names, list):
        return "names must be a list"
    if not all(isinstance(name, str) for name in names):
        return "names must be strings"
    if len(names) > MAX_PULL_NAMES:
        return f"at most {MAX_PULL_NAMES} names per request"
    hashes = body.get("hashes")
    if hashes is not None:
        if not isinstance(hashes, list) or len(hashes) > MAX_PULL_NAMES * 64 or not all(
                isinstance(h, str) and _HASH.fullmatch(h) for h in hashes):
            return "hashes must be a list of sha256 hex strings"
        hashes = frozenset(hashes)
    wanted = []
    for name in names:
        text = canonical(name.strip().rstrip("."))
        if text is not None and text not in wanted:
            wanted.append(text)
    return wanted, hashes


# --- reading a peer -----------------------------------------------------------------------

@dataclass(frozen=True)
class DigestEntry:
    """A validated digest entry. The version fields are None from a reference peer."""

    name: str               # canonical
    value_hash: str
    ts_ms: int
    ttl: int
    deleted: bool = False
    written_ms: int | None = None
    origin: str | None = None
    expiry_ms: int | None = None
    raw_name: str = ""      # the name as the peer wrote it (its cursor uses that)

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.ts_ms, self.raw_name, self.value_hash)

    @property
    def extended(self) -> bool:
        return self.expiry_ms is not None


@dataclass(frozen=True)
class DigestPage:
    """A peer's digest page after validation: the good entries, the reasons of the bad
    ones, and where the next page starts (``next_cursor``: the peer's, if it is sane)."""

    entries: tuple[DigestEntry, ...]
    rejected: tuple[str, ...]
    has_more: bool
    last_cursor: Cursor | None      # the last position seen with a sane ts, good or bad
    next_cursor: Cursor | None


STEP = 100         # entries checked between two yields of the ``*_steps`` parsers


def parse_digest(data, *, after: Cursor, limit: int, now_ms: int,
                 extended: bool) -> DigestPage | None:
    """Validate a digest answer to a request for ``limit`` entries after ``after``.

    None when the page itself is malformed. Entries must be strictly ascending after
    ``after`` with a ``ts`` at most 60 s ahead of ``now_ms`` (a peer cannot push the cursor
    into the future); entries past ``limit`` are ignored and counted once.
    """
    return _last(parse_digest_steps(data, after=after, limit=limit, now_ms=now_ms,
                                    extended=extended))


def _last(steps):
    """The final value of a ``*_steps`` parser run through in one go."""
    for result in steps:
        pass
    return result


def parse_digest_steps(data, *, after: Cursor, limit: int, now_ms: int, extended: bool):
    """``parse_digest`` in steps: yields None after every ``STEP`` entries (a caller on
    the reactor gives it a turn there), then the result."""
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        yield None
        return
    records, rejected = data["records"], []
    if len(records) > limit:
        records = records[:limit]
        rejected.append(OVERSIZED_PAGE)
    entries, last = [], None
    previous = after
    for index, item in enumerate(records, 1):
        if index % STEP == 0:
            yield None
        entry, position, reason = _digest_entry(item, now_ms, extended)
        if position is not None and position <= previous:
            entry, position, reason = None, None, OUT_OF_ORDER
        if position is not None:
            previous = last = position
        if entry is None:
            rejected.append(reason)
        else:
            entries.append(entry)
    has_more = data.get("has_more") is True
    next_cursor = parse_cursor(data.get("next_cursor"))
    if next_cursor is not None and (next_cursor.ts_ms > now_ms + MAX_FUTURE_MS
                                    or next_cursor < (last or after)):
        rejected.append(BAD_CURSOR)
        next_cursor = None
    yield DigestPage(tuple(entries), tuple(rejected), has_more, last, next_cursor)


def _digest_entry(item, now_ms: int, extended: bool):
    """(entry or None, its position if its ts is sane, reason if refused)."""
    if not isinstance(item, dict):
        return None, None, BAD_ENTRY
    raw, value_hash, ts, ttl = (item.get("name"), item.get("hash"), item.get("ts"),
                                item.get("ttl"))
    if not _is_int(ts) or ts < 0:
        return None, None, BAD_ENTRY
    if ts > now_ms + MAX_FUTURE_MS:
        return None, None, FUTURE
    if not isinstance(raw, str) or not _NAME.fullmatch(raw) \
            or not isinstance(value_hash, str) or not _HASH.fullmatch(value_hash):
        return None, None, BAD_ENTRY
    position = Cursor(ts, raw, value_hash)
    name = canonical(raw)
    if name is None or not _is_int(ttl) or not 0 <= ttl <= MAX_TTL:
        return None, position, BAD_ENTRY
    entry = DigestEntry(name, value_hash, ts, ttl, raw_name=raw)
    if extended:
        version = _version(item, now_ms)
        if version is None:
            return None, position, BAD_ENTRY
        entry = DigestEntry(name, value_hash, ts, ttl, *version, raw_name=raw)
    return entry, position, None


def _version(item: dict, now_ms: int):
    """(deleted, written_ms, origin, expiry_ms) of an extended entry, or None."""
    deleted, written, origin, expiry = (item.get("deleted"), item.get("written_ms"),
                                        item.get("origin"), item.get("expiry_ms"))
    if not isinstance(deleted, bool) or not _is_int(written) or not _is_int(expiry):
        return None
    if not 0 <= written <= now_ms + MAX_FUTURE_MS or not now_ms < expiry < 2 ** 63:
        return None
    if not isinstance(origin, str) or not origin.isprintable() \
            or len(origin.encode("utf-8", "surrogatepass")) > MAX_ORIGIN:
        return None
    return deleted, written, origin, expiry


def parse_listing(data, now_ms: int):
    """``(entries, reasons)`` of a full-set bucket listing (extended entries in (name,
    hash) order; positions are the peer's and play no part here)."""
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        return [], [MALFORMED]
    entries, rejected = [], []
    for item in records[:MAX_LIMIT]:
        entry, _, reason = _digest_entry(item, now_ms, True)
        if entry is None:
            rejected.append(reason)
        else:
            entries.append(entry)
    return entries, rejected


@dataclass(frozen=True)
class PulledRecord:
    name: str               # canonical
    value: str
    ttl: int
    deleted: bool = False
    written_ms: int | None = None
    origin: str | None = None
    expiry_ms: int | None = None


def parse_pull(data, *, now_ms: int, extended: bool):
    """``(records, reasons)`` of a pull answer, or None when it is malformed."""
    return _last(parse_pull_steps(data, now_ms=now_ms, extended=extended))


def parse_pull_steps(data, *, now_ms: int, extended: bool):
    """``parse_pull`` in steps: yields None after every ``STEP`` records, then the
    result."""
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        yield None
        return
    records, rejected = [], []
    for index, item in enumerate(data["records"], 1):
        if index % STEP == 0:
            yield None
        record = _pulled(item, now_ms, extended)
        if record is None:
            rejected.append(BAD_RECORD)
        else:
            records.append(record)
    yield records, rejected


def _pulled(item, now_ms: int, extended: bool) -> PulledRecord | None:
    if not isinstance(item, dict):
        return None
    raw, value, ttl = item.get("name"), item.get("value"), item.get("ttl")
    name = canonical(raw.strip().rstrip(".")) if isinstance(raw, str) else None
    if name is None or not isinstance(value, str) or not _is_int(ttl) \
            or not 0 <= ttl <= MAX_TTL:
        return None
    if not extended:
        return PulledRecord(name, value, ttl)
    version = _version(item, now_ms)
    return None if version is None else PulledRecord(name, value, ttl, *version)


# --- deciding what to pull ----------------------------------------------------------------

def wanted(entry: DigestEntry, local: Change | None, now_ms: int) -> bool:
    """Whether the peer's ``entry`` tells us something our ``local`` change of the same
    ``(name, value)`` does not (None: we have nothing live for it)."""
    if local is None:
        return True    # a tombstone too: it keeps an older copy from coming back
    local_expiry_ms = round(local.expiry * 1000)
    if entry.extended:
        peer_version = (entry.written_ms, entry.origin, entry.deleted)
        return peer_version > local.version or entry.expiry_ms > local_expiry_ms
    if local.deleted:
        # A reference peer knows no deletes: only a write after our delete brings it back.
        return entry.ts_ms > local.version[0]
    return now_ms + entry.ttl * 1000 > local_expiry_ms + TTL_SLACK_MS
