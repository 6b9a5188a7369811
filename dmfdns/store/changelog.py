"""The change log's ordering rule, its stable horizon, cursors and paging (docs/decisions.md §3).

Every committed write transaction takes one log time ``ts_ms = max(last_ts_ms + 1, now_ms)``
and persists it: the log never goes backwards when the wall clock does, and runs ahead of
it only by the number of commits inside one millisecond. Because the time is taken inside
the (serialised) write transaction, commit order and log order are the same.

Readers see only entries at least ``STABLE_HORIZON_MS`` old by their own clock. The reason
is in ``docs/storage.md``: served positions are never in the serving node's future (the
reference drops entries more than 60 s ahead), and a cursor can never pass a commit that
is still in flight however commits are stamped.
"""

import re
from typing import Callable, Iterable

from .api import Change, ChangesPage, Cursor

STABLE_HORIZON_MS = 1000
MAX_PAGE = 10_000
MAX_TS_MS = 2 ** 63 - 1
_SKIP_BUDGET = 256        # extra expired/filtered entries one page may step over
_HASH = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"[0-9]{1,19}")
LEGACY_SINCE_NAME = "\xff"  # the reference's sentinel: sorts after every ASCII name
LEGACY_SINCE_HASH = "g"


def next_ts(last_ts_ms: int, now_ms: int) -> int:
    """The log time of the next commit."""
    return max(last_ts_ms + 1, now_ms)


def to_ms(seconds: float) -> int:
    """Unix seconds to integer milliseconds, rounded so equal floats give equal ms (an
    entry is alive while ``expiry_ms > now_ms``; ``expiry == now`` is expired)."""
    return round(seconds * 1000)


def parse_cursor(text) -> Cursor | None:
    """``ts:name:hash`` or the legacy ``ts:name`` (reference digest rules: ts a
    non-negative integer, name at most 253 printable characters, hash empty or 64
    lowercase hex); None if malformed. Never raises."""
    if not isinstance(text, str) or not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3):
        return None
    ts, name = parts[0], parts[1]
    value_hash = parts[2] if len(parts) == 3 else ""
    if not _TS.fullmatch(ts) or int(ts) > MAX_TS_MS:
        return None
    if len(name) > 253 or not name.isprintable():
        return None
    if value_hash and not _HASH.fullmatch(value_hash):
        return None
    return Cursor(int(ts), name, value_hash)


def format_cursor(cursor: Cursor) -> str:
    return f"{cursor.ts_ms}:{cursor.name}:{cursor.value_hash}"


def since_cursor(since_ms: int) -> Cursor:
    """The reference's legacy ``since=N``: everything strictly newer than N."""
    return Cursor(since_ms, LEGACY_SINCE_NAME, LEGACY_SINCE_HASH)


def page(positions: Iterable[Cursor], lookup: Callable[[Cursor], Change | None], *,
         after: Cursor, limit: int, now_ms: int, horizon_ms: int,
         tombstones: bool) -> ChangesPage:
    """Assemble one page from ``positions`` (log keys strictly after ``after``, in order).

    Entries newer than the horizon end the page (everything after them is newer still).
    Expired entries, and tombstones when not wanted, are stepped over within a bounded
    budget, and the cursor moves past them so the next page does not scan them again.
    """
    stable_until = now_ms - horizon_ms
    changes: list[Change] = []
    cursor = after
    budget = limit + _SKIP_BUDGET
    for position in positions:
        if position.ts_ms > stable_until:
            return ChangesPage(tuple(changes), False, cursor)
        if len(changes) == limit or budget == 0:
            return ChangesPage(tuple(changes), True, cursor)
        budget -= 1
        cursor = position
        change = lookup(position)
        if change is None or to_ms(change.expiry) <= now_ms:
            continue
        if change.deleted and not tombstones:
            continue
        changes.append(change)
    return ChangesPage(tuple(changes), False, cursor)
