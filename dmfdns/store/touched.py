"""Which names each generation changed, kept in the store for the answer caches.

Every committed write bumps the store generation (``batch.GENERATION``); with it, the
write records the reversed-label keys of the names it touched in a ring of ``RING`` meta
slots (``store:touched:<generation mod RING>``). A DNS answer cache that last saw
generation ``g`` and now sees ``h`` reads the slots ``g+1 .. h`` and drops only the answers
for those names (and the negative answers, whose SOA serial follows the generation);
a worker process, which shares no memory with the writer, learns the same from LMDB.

A slot reads as unknown (``None``) when it was overwritten by a later lap of the ring, or
when its write touched more than ``MAX_NAMES`` names (a big sync batch, a long sweep): the
cache then starts afresh, which is always correct.
"""

RING = 256
MAX_NAMES = 1024
PREFIX = "store:touched:"
_ALL = b"*"


def record(tables, generation: int, keys) -> None:
    """Note, inside the write transaction, that ``generation`` touched ``keys``."""
    keys = list(keys)
    names = _ALL if len(keys) > MAX_NAMES else b"\n".join(keys)
    tables.set_meta(PREFIX + str(generation % RING), str(generation).encode() + b" " + names)


def between(tables, old: int, new: int) -> set | None:
    """The keys touched by generations ``old+1 .. new``, or None if not all are known."""
    if not 0 <= new - old <= RING:
        return None
    found = set()
    for generation in range(old + 1, new + 1):
        raw = tables.meta(PREFIX + str(generation % RING))
        if raw is None:
            return None
        stamp, _, names = bytes(raw).partition(b" ")
        if stamp != str(generation).encode() or names == _ALL:
            return None
        if names:
            found.update(names.split(b"\n"))
    return found
