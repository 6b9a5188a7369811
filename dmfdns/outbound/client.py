"""The one outbound HTTP client: the sync calls to peers and the user-side record writes.

``HttpClient.request(method, url, headers, body)`` gives a Deferred ``HttpResponse`` (any
status: what a status means is the caller's business, ``errors.check_status`` says it) or
fails with an ``OutboundError`` whose ``cause`` is a metric label. It uses twisted.web's
``Agent`` on the injected reactor with:

* one deadline covering the whole exchange — connect, TLS handshake, request, a slowly
  dribbled answer — after which the request is cancelled and the cause is ``timeout``;
* a cap on the response body read (``body.read_capped``): a peer that sends more is cut off;
* persistent connections, at most ``max_per_origin`` kept per origin; a peer that answers
  HTTP/1.0 (the reference node's ``http.server``) closes after each response (RFC 9112
  section 9.3) while the pool would keep the connection, and a POST sent on it before the
  close is seen fails unanswered (only idempotent methods are retried), so such an origin
  gets a fresh connection per request;
* ``https://`` verified by ``tls.TlsPolicy`` (the system trust store unless a CA is given).

Tests of the sync logic substitute any object with the same ``request`` method.
"""

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from ..twisted_private import quiet_client_pool
from .body import BytesBody, read_capped
from .errors import TIMEOUT, UNREACHABLE, OutboundError, classify
from .tls import TlsPolicy

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict = field(default_factory=dict)   # lowercase name -> last value
    body: bytes = b""


class HttpClient:
    """Outbound HTTP(S) on ``reactor``; ``timeout`` and ``max_bytes`` are the defaults of
    every request (each call may pass its own)."""

    def __init__(self, reactor, *, timeout: float = DEFAULT_TIMEOUT,
                 max_bytes: int = DEFAULT_MAX_BYTES, tls: TlsPolicy | None = None,
                 max_per_origin: int = 2, idle_seconds: float = 30):
        self._reactor = reactor
        self.timeout, self.max_bytes = timeout, max_bytes
        self.tls = tls or TlsPolicy()
        self._pool = quiet_client_pool(HTTPConnectionPool(reactor, persistent=True))
        self._pool.maxPersistentPerHost = max_per_origin
        self._pool.cachedConnectionTimeout = idle_seconds
        self._agent = Agent(reactor, contextFactory=self.tls, connectTimeout=timeout,
                            pool=self._pool)
        one_shot = quiet_client_pool(HTTPConnectionPool(reactor, persistent=False))
        self._one_shot_agent = Agent(reactor, contextFactory=self.tls,
                                     connectTimeout=timeout, pool=one_shot)
        self._http10_origins: set[str] = set()
        self.bytes_sent = 0
        self.bytes_received = 0

    def request(self, method: str, url: str, headers: dict | None = None,
                body: bytes | None = None, *, timeout: float | None = None,
                max_bytes: int | None = None):
        """A Deferred ``HttpResponse``; fails only with ``OutboundError``."""
        timeout = self.timeout if timeout is None else timeout
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return defer.fail(OutboundError(UNREACHABLE, f"not an http(s) URL: {url!r}"))
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        agent = self._one_shot_agent if origin in self._http10_origins else self._agent
        raw_headers = Headers({k.encode("latin-1"): [v.encode("latin-1")]
                               for k, v in (headers or {}).items()})
        self.bytes_sent += len(body or b"")
        try:
            sent = agent.request(method.encode("ascii"), url.encode("ascii"), raw_headers,
                                 None if body is None else BytesBody(body))
        except Exception as exc:   # a malformed URL (from a manifest, a profile)
            return defer.fail(OutboundError(UNREACHABLE, f"{url}: {exc}"))
        sent.addCallback(self._read, origin, self.max_bytes if max_bytes is None
                         else max_bytes)
        return self._within(sent, timeout, parts)

    def _within(self, exchange, timeout: float, parts):
        """The one deadline: cancel ``exchange`` after ``timeout`` and report ``timeout``
        whatever the cancellation surfaced as (Agent wraps it in its own errors)."""
        fired = []
        deadline = self._reactor.callLater(timeout, lambda: (fired.append(True),
                                                             exchange.cancel()))
        port = parts.port or (443 if parts.scheme == "https" else 80)

        def settle(result):
            if deadline.active():
                deadline.cancel()
            if not isinstance(result, Failure):
                return result
            if fired:
                raise OutboundError(TIMEOUT, f"no answer within {timeout:g} s")
            raise classify(result, lambda: self.tls.cause_for(parts.hostname, port,
                                                             self._reactor.seconds()))
        return exchange.addBoth(settle)

    def _read(self, response, origin: str, max_bytes: int):
        if tuple(response.version[1:]) < (1, 1):
            self._http10_origins.add(origin)
        headers = {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                   for k, v in response.headers.getAllRawHeaders()}

        def finish(body: bytes) -> HttpResponse:
            self.bytes_received += len(body)
            return HttpResponse(response.code, headers, body)
        # A body without a length ends when the connection closes (RFC 9112 section 6.3).
        return read_capped(response, max_bytes, close_delimited=True).addCallback(finish)

    def close(self):
        """Close the kept-alive connections."""
        return self._pool.closeCachedConnections()
