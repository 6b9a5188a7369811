"""One bound DNS or HTTP socket of a node, as a service (layer 3, built by ``make_service``).

A listener binds in ``privilegedStartService``, so a failure to bind is a ``NodeError``
raised synchronously from the node's ``startService``; the port it gets comes from the
reactor it is given (a test's memory reactor binds nothing).

A DNS UDP socket asks for a 4 MiB receive buffer (the kernel caps it at
``net.core.rmem_max``): at tens of thousands of queries a second the default ~200 KiB
holds a few milliseconds of traffic, and a pause of the process longer than that drops
every client's queries alike. With ``reuseport`` (``[dns] workers`` > 1) the socket is made
here with ``SO_REUSEPORT`` and adopted by the reactor, which Twisted's ``listenUDP`` and
``listenTCP`` do not offer, so each DNS process binds the same addresses and the kernel
spreads the queries over them (docs/decisions.md §3.5).
"""

import socket

from twisted.application import service
from twisted.internet import defer, error

from .config import ListenAddress
from .dns.server import TransportCounters
from .node_lock import NodeError


class Listener(service.Service):
    """One bound socket (UDP or TCP) for one configured address.

    Port 0 picks a free port; a UDP listener given ``same_port_as`` (its address's TCP
    listener) takes the port that one got, so UDP and TCP share it as resolvers expect
    (they retry a truncated answer over TCP on the same port). TCP binds first because a
    Twisted factory may listen on several ports while a DatagramProtocol may not, so it is
    the TCP side that moves when the UDP port is taken."""

    SAME_PORT_ATTEMPTS = 20
    UDP_RECEIVE_BUFFER = 4 * 2**20
    # Bytes of datagrams one reactor turn reads (Twisted's default is 256 KiB: thousands of
    # queued queries answered in one turn, the reactor held for hundreds of ms after any
    # pause). 16 KiB is a few hundred queries: other work, timers included, gets a turn
    # between batches, and the socket's buffer still drains at full speed.
    UDP_READ_PER_TURN = 16 * 2**10

    def __init__(self, reactor, kind: str, address: ListenAddress, protocol_or_factory,
                 counters: TransportCounters | None, same_port_as: "Listener | None" = None,
                 backlog: int | None = None, reuseport: bool = False):
        self.reactor = reactor
        self.reuseport = reuseport
        self.backlog = backlog  # TCP listen(2) queue; None: Twisted's default (50)
        self.kind = kind
        self.address = address
        self.target = protocol_or_factory
        self.counters = counters
        self.same_port_as = same_port_as
        self.port = None
        self.setName(f"dns-{kind} {address}")

    def privilegedStartService(self):
        # Binding here (before privileges would be dropped) also makes a failure to bind
        # surface synchronously, as NodeError, from startService.
        partner = self.same_port_as
        if self.address.port != 0 or partner is None or partner.port is None:
            self.port = self._listen(self.address.port)
        else:
            self.port = self._listen_on_partner_port(partner)
        service.Service.privilegedStartService(self)

    def _listen_on_partner_port(self, partner: "Listener"):
        for _ in range(self.SAME_PORT_ATTEMPTS):
            try:
                return self._listen(partner.bound.port)
            except NodeError:
                partner.rebind()   # that port is taken for us: both move to a new one
        return self._listen(partner.bound.port)

    def _listen(self, port: int):
        if self.reuseport:
            return self._adopt(port)
        listen = self.reactor.listenUDP if self.kind == "udp" else self.reactor.listenTCP
        options = {"backlog": self.backlog} if self.kind != "udp" and self.backlog else {}
        try:
            bound = listen(port, self.target, interface=self.address.host, **options)
        except error.CannotListenError as exc:
            reason = getattr(exc.socketError, "strerror", None) or str(exc.socketError)
            raise self._cannot(reason) from None
        if self.kind == "udp":
            handle = getattr(bound, "getHandle", None)
            if handle is not None:
                _grow_receive_buffer(handle(), self.UDP_RECEIVE_BUFFER)
            bound.maxThroughput = self.UDP_READ_PER_TURN
        return bound

    def _adopt(self, port: int):
        """Bind a socket with SO_REUSEPORT ourselves and hand it to the reactor."""
        family = socket.AF_INET6 if ":" in self.address.host else socket.AF_INET
        udp = self.kind == "udp"
        sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if not udp:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.address.host, port))
            if udp:
                _grow_receive_buffer(sock, self.UDP_RECEIVE_BUFFER)
            else:
                sock.listen(self.backlog or 50)
            sock.setblocking(False)
            if udp:
                bound = self.reactor.adoptDatagramPort(sock.fileno(), family, self.target)
                bound.maxThroughput = self.UDP_READ_PER_TURN
                return bound
            return self.reactor.adoptStreamPort(sock.fileno(), family, self.target)
        except OSError as exc:
            raise self._cannot(exc.strerror or str(exc)) from None
        finally:
            sock.close()            # the reactor holds its own duplicate

    def _cannot(self, reason: str) -> NodeError:
        return NodeError(f"cannot listen on {self.address} ({self.kind.upper()}): {reason}")

    def rebind(self) -> None:
        """Move to another free port (a TCP listener on a configured port 0)."""
        old, self.port = self.port, self._listen(self.address.port)
        old.stopListening()

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        service.Service.startService(self)

    def stopService(self):
        service.Service.stopService(self)
        port, self.port = self.port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return None

    @property
    def bound(self) -> ListenAddress | None:
        """The address actually bound (with the real port), or None when not listening."""
        if self.port is None:
            return None
        return ListenAddress(self.address.host, self.port.getHost().port)


def _grow_receive_buffer(sock, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:
        pass        # a smaller buffer only loses more under bursts
