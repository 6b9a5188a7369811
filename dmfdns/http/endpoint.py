"""The one wrapper every leaf resource goes through (docs/decisions.md §5).

A leaf is a table ``{method: handler}``; a handler takes a ``Call`` and returns a ``Reply``
or raises ``HttpError``. A leaf declares what a request needs before its handler runs, and
the wrapper checks it, in this order: the method (405 with ``Allow``, RFC 9110 section
15.5.6; HEAD served by the GET handler without a body, section 9.3.2), the path (404; a leaf
that ``parses`` a path below it gets the result as ``call.target``), the per-client rate
limit (its ``limiter`` bucket: 429 ``rate limit exceeded`` or its own ``limited`` text),
then its ``auth`` (a callable
``auth(call)`` from ``dmfdns.http.auth`` that returns the caller's credential, kept as
``call.credential``, or raises 401/403/429). The wrapper also owns JSON bodies (anything malformed is 400
``{"error": "invalid body"}``), the error taxonomy (``HttpError`` -> its status, a full store
-> 507, another store refusal -> 502 ``{"ok": false}`` as the reference's failed publish, any
bug -> 500, logged at most once a minute, never a traceback to the client) and the request
metric. Body size is capped before the body is read, by the channel (``dmfdns.http.channel``).
"""

import json
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from ..store.api import StoreError, StoreFull
from .ratelimit import ProxyTrust, TokenBucketLimiter

JSON_TYPE = b"application/json"
KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
INVALID_BODY = "invalid body"
RATE_LIMITED = "rate limit exceeded"
FAILURE_LOG_INTERVAL = 60.0


class HttpError(Exception):
    """A request the node refuses: ``status`` and the ``{"error": message}`` body."""

    def __init__(self, status: int, message: str, *, headers=(), body=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)
        self.body = body

    def reply(self) -> "Reply":
        body = self.body if self.body is not None else {"error": self.message}
        return Reply(self.status, body, headers=self.headers)


@dataclass(frozen=True)
class Reply:
    """A response: JSON ``body`` (None for none), or ``raw`` bytes of ``content_type``."""

    status: int = 200
    body: object = None
    raw: bytes | None = None
    content_type: bytes = JSON_TYPE
    headers: tuple = ()

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Boundary:
    """What every endpoint shares: the clock, who the client is, and where request
    metrics go (``observe(handler, method, status, seconds)``)."""

    clock: object  # IReactorTime
    observe: Callable[[str, str, int, float], None]
    proxies: ProxyTrust = ProxyTrust()


class Call:
    """One request as a handler sees it."""

    def __init__(self, request, method: str, boundary: Boundary):
        self.request = request
        self.method = method
        self.target = None       # what the leaf's path parser made of the path below it
        self.credential = None   # what the leaf's auth returned
        self.now = boundary.clock.seconds()
        self.args = [unquote(part.decode("latin-1")) for part in request.postpath]
        peer = request.getClientAddress()
        host = getattr(peer, "host", None) or ""
        forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
        self.client = boundary.proxies.client(
            host, [line.decode("latin-1") for line in forwarded])

    def header(self, name: str) -> str | None:
        values = self.request.requestHeaders.getRawHeaders(name.encode("ascii"))
        return values[-1].decode("latin-1") if values else None

    def query(self, name: str) -> str | None:
        values = self.request.args.get(name.encode("ascii"))
        return values[0].decode("utf-8", "replace") if values else None

    def body(self) -> bytes:
        content = self.request.content
        if content is None:
            return b""
        content.seek(0)
        return content.read()

    def json_object(self) -> dict:
        """The body as a JSON object; ``{}`` when there is no body (as the reference)."""
        raw = self.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise HttpError(400, INVALID_BODY) from None
        if not isinstance(data, dict):
            raise HttpError(400, INVALID_BODY)
        return data


class _FailureLog:
    """Logs a handler bug at most once per interval so one bad request per packet cannot
    flood the log (docs/decisions.md §8.2)."""

    def __init__(self, clock, log: Logger):
        self._clock = clock
        self._log = log
        self._next = None
        self._suppressed = 0

    def failure(self, handler: str, failure=None) -> None:
        now = self._clock.seconds()
        if self._next is not None and now < self._next:
            self._suppressed += 1
            return
        self._log.failure("HTTP handler {handler} failed ({suppressed} more suppressed)",
                          failure, handler=handler, suppressed=self._suppressed)
        self._suppressed = 0
        self._next = now + FAILURE_LOG_INTERVAL


def method_label(method: str) -> str:
    """The method as a bounded metric label."""
    return method if method in KNOWN_METHODS else "other"


class Endpoint(resource.Resource):
    """A leaf resource: ``methods`` maps "GET", "POST", ... to handlers; ``parses`` (None:
    only the endpoint's own path, or with "/"), ``limiter`` and ``auth`` are what a request
    needs first (see the module docstring)."""

    isLeaf = True
    log = Logger()

    def __init__(self, handler: str, methods: dict, boundary: Boundary, *,
                 parses: Callable[[list], object] | None = None,
                 limiter: TokenBucketLimiter | None = None, limited: str = RATE_LIMITED,
                 auth: Callable[["Call"], object] | None = None):
        super().__init__()
        self.handler = handler
        self.methods = dict(methods)
        self.boundary = boundary
        self.parses = parses
        self.limiter = limiter
        self.limited = limited   # the 429's error text
        self.auth = auth
        self._failures = _FailureLog(boundary.clock, self.log)

    def render(self, request):
        started = self.boundary.clock.seconds()
        method = request.method.decode("latin-1", "replace")
        reply = self._dispatch(request, method)
        if isinstance(reply, defer.Deferred):
            # A handler that waits (a write waiting for its durable commit) answers later;
            # its failures go through the same taxonomy.
            gone = []
            request.notifyFinish().addErrback(gone.append)
            reply.addErrback(lambda failure: self._refusal(failure.value, failure))
            reply.addCallback(lambda later: gone or self._respond(request, method, later,
                                                                  started))
            reply.addErrback(lambda failure: self._failures.failure(self.handler, failure))
        else:
            self._respond(request, method, reply, started)
        return server.NOT_DONE_YET

    def _respond(self, request, method: str, reply: Reply, started: float) -> None:
        payload = self._write_head(request, reply)
        # Written here rather than returned, so twisted.web adds no Content-Length to a 204
        # (RFC 9110 section 8.6) and a HEAD answer keeps the GET's length without its body.
        request.write(b"" if method == "HEAD" else payload)
        request.finish()
        self.boundary.observe(self.handler, method_label(method), reply.status,
                              max(0.0, self.boundary.clock.seconds() - started))

    def _dispatch(self, request, method: str):
        """The handler's ``Reply`` (or a Deferred of one)."""
        handler = self.methods.get(method)
        if handler is None and method == "HEAD":
            handler = self.methods.get("GET")
        if self.parses is None and request.postpath not in ([], [b""]):
            return Reply(404, {"error": "not found"})
        try:
            if handler is None:
                raise HttpError(405, "method not allowed",
                                headers=((b"Allow", ", ".join(self._allowed()).encode()),))
            call = Call(request, method, self.boundary)
            self._admit(call)
            return handler(call)
        except Exception as exc:
            return self._refusal(exc)

    def _admit(self, call: Call) -> None:
        """The leaf's declared needs, in order: its path, the client's bucket, its auth."""
        if self.parses is not None:
            call.target = self.parses(call.args)
        if self.limiter is not None and not self.limiter.allow(call.client):
            raise HttpError(429, self.limited)
        if self.auth is not None:
            call.credential = self.auth(call)

    def _refusal(self, exc: BaseException, failure=None) -> Reply:
        """The reply for what a handler raised (``failure``: when it came in a Deferred)."""
        if isinstance(exc, HttpError):
            return exc.reply()
        if isinstance(exc, StoreFull):
            # One line per refused write: ops/runbooks/lmdb-map-full.md greps for it.
            self.log.warn("{handler} write refused with 507: {error}", handler=self.handler,
                          error=str(exc))
            return Reply(507, {"ok": False, "error": "the store is full; writes are refused"})
        if isinstance(exc, StoreError):
            return Reply(502, {"ok": False, "error": str(exc)})
        self._failures.failure(self.handler, failure)
        return Reply(500, {"error": "internal error"})

    def _allowed(self) -> list[str]:
        allowed = list(self.methods)
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.append("HEAD")
        return allowed

    @staticmethod
    def _write_head(request, reply: Reply) -> bytes:
        payload = reply.payload()
        request.setResponseCode(reply.status)
        request.setHeader(b"Server", b"dmfdns")
        if payload:
            request.setHeader(b"Content-Type", reply.content_type)
        for name, value in reply.headers:
            request.setHeader(name, value)
        if reply.status not in (204, 304):
            request.setHeader(b"Content-Length", str(len(payload)).encode("ascii"))
        return payload


class NotFound(Endpoint):
    """Every path the tree does not know: 404 ``{"error": "not found"}`` for any method."""

    def __init__(self, boundary: Boundary):
        super().__init__("not_found", {}, boundary)

    def _dispatch(self, request, method: str) -> Reply:
        return Reply(404, {"error": "not found"})


class Tree(resource.Resource):
    """An inner node of the resource tree whose unknown children are ``NotFound``."""

    def __init__(self, not_found: NotFound):
        super().__init__()
        self.not_found = not_found

    def getChild(self, path, request):
        return self.not_found

    def render(self, request):
        return self.not_found.render(request)
