"""One bound DNS or HTTP socket of a node, as a service (layer 3, built by ``make_service``).

A listener binds in ``privilegedStartService``, so a failure to bind is a ``NodeError``
raised synchronously from the node's ``startService``; the port it gets comes from the
reactor it is given (a test's memory reactor binds nothing).
"""

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

    def __init__(self, reactor, kind: str, address: ListenAddress, protocol_or_factory,
                 counters: TransportCounters | None, same_port_as: "Listener | None" = None,
                 backlog: int | None = None):
        self.reactor = reactor
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
        listen = self.reactor.listenUDP if self.kind == "udp" else self.reactor.listenTCP
        options = {"backlog": self.backlog} if self.kind != "udp" and self.backlog else {}
        try:
            return listen(port, self.target, interface=self.address.host, **options)
        except error.CannotListenError as exc:
            reason = getattr(exc.socketError, "strerror", None) or str(exc.socketError)
            raise NodeError(f"cannot listen on {self.address} ({self.kind.upper()}): "
                            f"{reason}") from None

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
