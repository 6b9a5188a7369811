"""Which connection to close when a listener is full: the admission policy shared by the DNS
TCP listener and the HTTP server.

RFC 7766 §6.2.3 and §10 ask a DNS server to limit concurrent TCP connections in total and
per client; an HTTP server needs the same against slowloris floods. A bare cap is not enough:
one client holding every slot with idle connections locks everyone else out. So here:

* a **per-client cap**: a client at its cap that opens another connection closes one of its
  *own* quiet connections (or is refused when all of them are working), never someone
  else's;
* a **total cap**: when the listener is full, a quiet connection of the client holding the
  most connections is closed to make room;
* **a grace period for new connections**: a connection that has not yet delivered its first
  complete request is not closed until it has been open ``grace`` seconds, so a storm of
  reconnecting clients cannot evict a legitimate connection before its request is read;
* **except for a hog**: an address holding over a quarter of the slots, and more than the
  newcomer's address, loses even its new connections (never one being answered). Without
  this, a storm from one address that reconnects as fast as it is closed keeps every slot
  new and locks everyone else out (``tests/reliability/test_http_flood.py``).

When every candidate is busy or spared, the *new* connection is refused instead.

The table knows nothing of sockets: a connection is any hashable object, its state is told
through ``opened``, ``active``, ``request_read``, ``set_busy`` and ``closed``, and time is passed
in.
"""

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Entry:
    client: str | None
    opened_at: float
    served: bool = False   # at least one complete request has been read
    busy: bool = False     # a request is being answered: never evicted


class ConnectionTable:
    """Connections of one listener, least recently active first, grouped by client."""

    def __init__(self, *, max_total: int, max_per_client: int, grace: float,
                 is_busy=None):
        """``is_busy(connection)``, when given, is asked too: a connection that says it is
        answering a request is never closed."""
        self.is_busy = is_busy
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.grace = grace
        self._entries: OrderedDict = OrderedDict()
        self._by_client: dict = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, connection) -> bool:
        return connection in self._entries

    def count(self, client) -> int:
        return len(self._by_client.get(client, ()))

    def make_room(self, client, now: float):
        """Before accepting a connection from ``client``: ``(admit, victim)``. ``victim``
        (or None) is a connection the caller must close first; ``admit`` False means refuse
        the new connection."""
        if self.count(client) >= self.max_per_client:
            victim = self._quiet_of(client, now)
            return victim is not None, victim
        if len(self._entries) < self.max_total:
            return True, None
        holders = sorted(self._by_client, key=self.count, reverse=True)
        for holder in holders:
            victim = self._quiet_of(holder, now)
            if victim is not None:
                return True, victim
        hog = holders[0]
        if self.count(hog) > max(self.max_total // 4, self.count(client), 1):
            victim = self._quiet_of(hog, now, spare_new=False)
            if victim is not None:
                return True, victim
        return False, None

    def _quiet_of(self, client, now: float, spare_new: bool = True):
        """The least recently active connection of ``client`` that may be closed."""
        for connection in self._by_client.get(client, ()):
            entry = self._entries[connection]
            if entry.busy or (self.is_busy is not None and self.is_busy(connection)):
                continue
            if not spare_new or entry.served or now - entry.opened_at >= self.grace:
                return connection
        return None

    def opened(self, connection, client, now: float) -> None:
        self._entries[connection] = _Entry(client, now)
        self._by_client.setdefault(client, OrderedDict())[connection] = None

    def active(self, connection) -> None:
        """Bytes arrived: the connection moves to the most recently active end."""
        entry = self._entries.get(connection)
        if entry is not None:
            self._entries.move_to_end(connection)
            self._by_client[entry.client].move_to_end(connection)

    def request_read(self, connection) -> None:
        """A complete request arrived: the grace of a new connection is over."""
        entry = self._entries.get(connection)
        if entry is not None:
            entry.served = True

    def set_busy(self, connection, busy: bool) -> None:
        """While busy (a request is being answered) the connection is never evicted."""
        entry = self._entries.get(connection)
        if entry is not None:
            entry.busy = busy
            if busy:
                entry.served = True

    def closed(self, connection) -> None:
        entry = self._entries.pop(connection, None)
        if entry is None:
            return
        group = self._by_client[entry.client]
        group.pop(connection, None)
        if not group:
            del self._by_client[entry.client]


def close_victim(transport, clock, linger: float) -> None:
    """Close an evicted connection: gracefully, so an answer still in its write buffer
    reaches the client, and aborted after ``linger`` seconds if the client does not read."""
    transport.loseConnection()
    clock.callLater(linger, _abort_if_open, transport)


def _abort_if_open(transport) -> None:
    if not getattr(transport, "disconnected", True):
        transport.abortConnection()
