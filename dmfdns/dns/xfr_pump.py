"""Streaming a zone transfer down one DNS TCP connection, as fast as the client reads.

The ``TransferPump`` is a pull producer (``IPullProducer``): the transport asks for the
next message each time its write buffer has drained, so a transfer never queues more than
one message ahead of the client, and each message is one reactor turn, between which
every other client is served. While it runs, the connection's own query reading is paused
(pipelined queries wait in order, RFC 7766 section 6.2.1.1), and the connection's idle
timer restarts with every message, so a client that stops reading is cut off by the same
timeout as an idle one.
"""

from twisted.logger import Logger

from .xfr import PENDING

log = Logger(namespace="dmfdns.xfr")


class TransferPump:
    """Writes ``transfer``'s messages on ``protocol``'s transport (``DNSStreamProtocol``),
    then hands the transport back to the protocol, which reads queries again."""

    def __init__(self, protocol, transfer, clock, counters):
        self.protocol = protocol
        self.transfer = transfer
        self.clock = clock
        self.counters = counters            # xfr.TransferCounters
        self._later = None
        self._done = False

    def start(self) -> None:
        self._busy(True)                      # never evicted to make room mid-transfer
        transport = self.protocol.transport
        self.protocol.pauseProducing()       # no more queries read until the end
        transport.unregisterProducer()
        transport.registerProducer(self, False)   # calls resumeProducing at once

    def resumeProducing(self) -> None:
        self._later = None
        if self._done:
            return
        try:
            message = self.transfer.next_message(self.clock.seconds())
        except Exception:
            log.failure("zone transfer failed; closing the connection")
            self._stop()
            self.protocol.transport.loseConnection()
            return
        if message is None:
            self._finish()
        elif message is PENDING:
            self._later = self.clock.callLater(0, self.resumeProducing)
        else:
            self.protocol.sendString(message)
            self.counters.messages += 1
            self.counters.bytes += len(message) + 2
            self.protocol.resetTimeout()

    def stopProducing(self) -> None:
        """The connection is gone: release the store snapshot."""
        self._stop()

    def _stop(self) -> None:
        self._done = True
        if self._later is not None and self._later.active():
            self._later.cancel()
        self._later = None
        self.transfer.close()
        self._busy(False)

    def _busy(self, busy: bool) -> None:
        table = getattr(self.protocol.factory, "table", None)
        if table is not None and self.protocol in table:
            table.set_busy(self.protocol, busy)

    def _finish(self) -> None:
        self._stop()
        transport = self.protocol.transport
        transport.unregisterProducer()
        if not transport.disconnecting:
            transport.registerProducer(self.protocol, True)
            self.protocol.resumeProducing()      # answers what was pipelined meanwhile
