"""The bounded body of an outbound request and of its response.

Everything from the network is bounded (docs/architecture.md). A request body is produced from
memory (``BytesBody``: no cooperator, so no global reactor), and a response body is read only
up to a cap (``read_capped``): a declared length over the cap is refused before anything is
read, and a body that grows past it is cut off. The deadline and the error set are the client's
(``dmfdns.outbound.client``, ``dmfdns.outbound.errors``).
"""

from twisted.internet import defer, protocol
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer


class BodyTooLarge(Exception):
    """The response body is (or declares itself) longer than the cap."""


class BodyCutShort(Exception):
    """The connection ended before the response body was complete."""


@implementer(IBodyProducer)
class BytesBody:
    """A request body known in full."""

    def __init__(self, data: bytes):
        self.data, self.length = data, len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class _CappedBody(protocol.Protocol):
    """Collects a response body, giving up (and stopping the transport) past ``limit``."""

    def __init__(self, done: defer.Deferred, limit: int, complete: tuple):
        self.done, self.limit, self.complete = done, limit, complete
        self.parts, self.size = [], 0

    def dataReceived(self, data: bytes):
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.transport.stopProducing()
            self.done.errback(BodyTooLarge(f"response larger than {self.limit} bytes"))
            return
        self.parts.append(data)

    def connectionLost(self, reason=protocol.connectionDone):
        if self.done.called:
            return
        if reason.check(*self.complete):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(BodyCutShort(f"response cut short: {reason.getErrorMessage()}"))


def read_capped(response, limit: int, *, close_delimited: bool = False) -> defer.Deferred:
    """A Deferred of the body of ``response``, at most ``limit`` bytes.

    ``close_delimited``: a body without a length that ends when the connection closes
    (``PotentialDataLoss``, RFC 9112 section 6.3 rule 8) counts as complete. Cancelling the
    Deferred stops reading.
    """
    if response.length is not UNKNOWN_LENGTH and response.length > limit:
        response.deliverBody(protocol.Protocol())   # discard; the pool drops the connection
        return defer.fail(BodyTooLarge(f"response declares {response.length} bytes, "
                                       f"larger than {limit} bytes"))
    complete = (ResponseDone, PotentialDataLoss) if close_delimited else (ResponseDone,)
    done = defer.Deferred(lambda _: reader.transport.stopProducing())
    reader = _CappedBody(done, limit, complete)
    response.deliverBody(reader)
    return done
