"""The per-``(name, value)`` state and the rules that change it (docs/decisions.md §3).

Each ``(name, value)`` pair is one register: a version (write time, origin node id, deleted
flag), an expiry, and whether it is a tombstone. Local writes and replicated events are
merged with one rule: the larger version decides live-or-deleted, and expiry is the maximum
ever seen. Both parts are joins (max), so replicas that see the same events in any order,
repeated or not, end in the same state (a last-writer-wins register per element, see
docs/decisions.md §3.3). An entry whose expiry has passed counts as absent
everywhere, so sweeping it is only an optimisation.

Times are integer milliseconds; nothing here reads a clock.
"""

from dataclasses import dataclass, replace

NEW_ORDER = 0
"""``Entry.order`` of an entry not yet stored; the writer assigns the next insertion number."""


@dataclass(frozen=True)
class Entry:
    """The stored state of one ``(name, value)`` pair.

    ``ts_ms`` is the entry's position in this node's change log (it moves to the tail on
    every change); ``written_ms``/``origin`` are the event's version, which travel with it;
    ``order`` is the insertion number that gives ``get`` and the TXT blob their order.
    """

    value: bytes
    expiry_ms: int
    written_ms: int
    origin: str
    deleted: bool
    ts_ms: int
    order: int = NEW_ORDER

    @property
    def version(self) -> tuple[int, str, bool]:
        return (self.written_ms, self.origin, self.deleted)

    def alive(self, now_ms: int) -> bool:
        return self.expiry_ms > now_ms

    def visible(self, now_ms: int) -> bool:
        """A live, unexpired value: what ``get`` returns."""
        return not self.deleted and self.expiry_ms > now_ms


def _current(old: Entry | None, now_ms: int) -> Entry | None:
    """``old`` unless it has expired: an expired entry is treated as never written."""
    return old if old is not None and old.alive(now_ms) else None


def _written_after(current: Entry | None, ts_ms: int) -> int:
    """A local event's write time: the log time, but always after the version it replaces,
    so a delete that follows a put this node has seen wins even if the put's writer had a
    clock running ahead (a hybrid logical clock's rule)."""
    if current is None:
        return ts_ms
    return max(ts_ms, current.written_ms + 1)


def local_put(old: Entry | None, value: bytes, expiry_ms: int, *, ts_ms: int, now_ms: int,
              node_id: str) -> Entry | None:
    """The entry after a local put, or None if nothing changes (already live with at least
    this expiry, or the expiry has already passed)."""
    if expiry_ms <= now_ms:
        return None
    current = _current(old, now_ms)
    if current is None:
        return Entry(value, expiry_ms, ts_ms, node_id, False, ts_ms)
    if not current.deleted and expiry_ms <= current.expiry_ms:
        return None
    return replace(current, expiry_ms=max(expiry_ms, current.expiry_ms),
                   written_ms=_written_after(current, ts_ms), origin=node_id,
                   deleted=False, ts_ms=ts_ms)


def local_delete(old: Entry | None, *, ts_ms: int, now_ms: int, node_id: str) -> Entry | None:
    """The tombstone replacing a live value, or None if there is no live value. The
    tombstone keeps the value's expiry so it replicates for as long as copies may exist."""
    current = _current(old, now_ms)
    if current is None or current.deleted:
        return None
    return replace(current, written_ms=_written_after(current, ts_ms), origin=node_id,
                   deleted=True, ts_ms=ts_ms)


def merge_remote(old: Entry | None, incoming: Entry, *, ts_ms: int, now_ms: int) -> Entry | None:
    """The entry after merging a peer's event, or None if it changes nothing (expired on
    arrival, or dominated: an older or equal version with no later expiry)."""
    if not incoming.alive(now_ms):
        return None
    current = _current(old, now_ms)
    if current is None:
        return replace(incoming, ts_ms=ts_ms, order=NEW_ORDER)
    winner = incoming if incoming.version > current.version else current
    expiry_ms = max(incoming.expiry_ms, current.expiry_ms)
    if winner is current and expiry_ms == current.expiry_ms:
        return None
    return replace(current, expiry_ms=expiry_ms, written_ms=winner.written_ms,
                   origin=winner.origin, deleted=winner.deleted, ts_ms=ts_ms)
