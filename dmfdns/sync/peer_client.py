"""Calls to one peer's ``/v1/sync/*``: bounded in time and size, never trusted.

``HttpTransport`` is the one seam: ``request(method, url, headers, body)`` gives a Deferred
``HttpResponse``. ``AgentTransport`` implements it with twisted.web's ``Agent`` on the
injected reactor (persistent connections, a connect timeout, one deadline covering the whole
exchange including a slowly dribbled body, and a cap on the body read: a peer that sends
more is cut off). Tests substitute a transport that calls another node's site in memory.

``PeerClient`` turns the calls into validated values (``dmfdns.sync.wire``) or a
``PeerError`` whose ``reason`` is a metric label. Every request carries the sync bearer token
and the capability header; whether the answer carries it back tells a dmfdns peer from a
``dnsmesh`` one.
"""

import json
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlsplit

from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.http_headers import Headers

from ..http.outbound import BodyCutShort, BodyTooLarge, BytesBody, read_capped
from ..store.api import Cursor
from ..store.changelog import format_cursor
from . import wire
from .fullset import bucket_label

TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
FORBIDDEN = "forbidden"
STATUS = "status"
TOO_LARGE = "too_large"
MALFORMED = "malformed"
ERROR_REASONS = (TIMEOUT, UNREACHABLE, FORBIDDEN, STATUS, TOO_LARGE, MALFORMED)


class PeerError(Exception):
    """A call to a peer that gave nothing usable; ``reason`` is one of ERROR_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict = field(default_factory=dict)   # lowercase name -> last value
    body: bytes = b""


class HttpTransport(Protocol):
    def request(self, method: str, url: str, headers: dict, body: bytes | None): ...


# --- twisted.web implementation -----------------------------------------------------------

class _QuietFactory(_HTTP11ClientFactory):
    noisy = False      # no "Starting factory" log line per connection to a peer


class AgentTransport:
    """HTTP/1.1 with persistent connections; ``timeout`` bounds each whole exchange.

    A peer that answers HTTP/1.0 (the reference node's ``http.server``) closes the connection
    after each response (RFC 9112 section 9.3), but Twisted's pool keeps it, and a POST sent
    on it before the close is noticed fails unanswered (only idempotent methods are retried).
    Such a peer's origin is remembered and gets a fresh connection per request.
    """

    def __init__(self, reactor, *, timeout: float, max_bytes: int):
        self._reactor = reactor
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 2
        self._pool.cachedConnectionTimeout = 30
        self._pool._factory = _QuietFactory
        self._agent = Agent(reactor, connectTimeout=timeout, pool=self._pool)
        one_shot_pool = HTTPConnectionPool(reactor, persistent=False)
        one_shot_pool._factory = _QuietFactory
        self._one_shot_agent = Agent(reactor, connectTimeout=timeout, pool=one_shot_pool)
        self._http10_origins: set[str] = set()
        self.bytes_sent = 0
        self.bytes_received = 0

    def request(self, method: str, url: str, headers: dict, body: bytes | None):
        raw_headers = Headers({k.encode("latin-1"): [v.encode("latin-1")]
                               for k, v in headers.items()})
        producer = None if body is None else BytesBody(body)
        self.bytes_sent += len(body or b"")
        origin = _origin(url)
        agent = self._one_shot_agent if origin in self._http10_origins else self._agent
        try:
            sent = agent.request(method.encode("ascii"), url.encode("ascii"),
                                 raw_headers, producer)
        except Exception as exc:   # a malformed URL from a manifest
            return defer.fail(PeerError(UNREACHABLE, str(exc)))
        sent.addCallback(self._note_version, origin)
        sent.addCallback(self._read)
        sent.addTimeout(self.timeout, self._reactor)
        sent.addErrback(self._classify)
        return sent

    def _note_version(self, response, origin: str):
        if tuple(response.version[1:]) < (1, 1):
            self._http10_origins.add(origin)
        return response

    def _read(self, response):
        headers = {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                   for k, v in response.headers.getAllRawHeaders()}

        def finish(body: bytes) -> HttpResponse:
            self.bytes_received += len(body)
            return HttpResponse(response.code, headers, body)
        return read_capped(response, self.max_bytes).addCallback(finish)

    @staticmethod
    def _classify(failure):
        if failure.check(BodyTooLarge):
            raise PeerError(TOO_LARGE, failure.getErrorMessage())
        if failure.check(BodyCutShort):
            raise PeerError(UNREACHABLE, failure.getErrorMessage())
        if failure.check(defer.TimeoutError, defer.CancelledError):
            raise PeerError(TIMEOUT, "no complete answer in time")
        raise PeerError(UNREACHABLE, failure.getErrorMessage())

    def close(self):
        return self._pool.closeCachedConnections()


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` (the unit of connection reuse), lowercased."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


# --- the sync calls -----------------------------------------------------------------------

class PeerClient:
    """The sync calls to the peer at ``base_url`` (``http://host:port``)."""

    def __init__(self, transport: HttpTransport, base_url: str, token: str):
        self.transport = transport
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}",
                         wire.CAPABILITY_HEADER: wire.CAPABILITY,
                         "Accept": "application/json"}
        self.bytes_sent = 0
        self.bytes_received = 0

    async def _call(self, method: str, path: str, body: dict | None = None):
        """``(status, json or None, extended)``; PeerError unless 200 or 204."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        self.bytes_sent += len(path) + len(data or b"")
        response = await self.transport.request(method, self.base_url + path, headers, data)
        self.bytes_received += len(response.body)
        if response.status == 403 or response.status == 401:
            raise PeerError(FORBIDDEN, f"{path}: {response.status}")
        if response.status == 204:
            return 204, None, False
        if response.status != 200:
            raise PeerError(STATUS, f"{path}: HTTP {response.status}")
        try:
            parsed = json.loads(response.body)
        except (ValueError, RecursionError):
            raise PeerError(MALFORMED, f"{path}: not JSON") from None
        extended = response.headers.get(wire.CAPABILITY_HEADER.lower()) == wire.CAPABILITY
        return 200, parsed, extended

    async def digest(self, cursor: Cursor, limit: int, now_ms: int):
        """``(DigestPage, extended)`` for the page after ``cursor``."""
        path = f"/v1/sync/digest?cursor={quote(format_cursor(cursor), safe=':')}&limit={limit}"
        _, data, extended = await self._call("GET", path)
        page = wire.parse_digest(data, after=cursor, limit=limit, now_ms=now_ms,
                                 extended=extended)
        if page is None:
            raise PeerError(MALFORMED, "digest page has the wrong shape")
        return page, extended

    async def pull(self, names: list[str], hashes: list[str] | None, now_ms: int):
        """``(records, rejection reasons, extended)`` for ``names`` (at most 256)."""
        body = {"names": names}
        if hashes is not None:
            body["hashes"] = hashes
        _, data, extended = await self._call("POST", "/v1/sync/pull", body)
        parsed = wire.parse_pull(data, now_ms=now_ms, extended=extended)
        if parsed is None:
            raise PeerError(MALFORMED, "pull answer has the wrong shape")
        return parsed[0], parsed[1], extended

    async def manifest(self) -> str | None:
        """The peer's current manifest wire, or None (204 or no usable wire)."""
        status, data, _ = await self._call("GET", "/v1/sync/cluster-manifest")
        if status == 204:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("wire"), str):
            raise PeerError(MALFORMED, "manifest answer has the wrong shape")
        return data["wire"]

    async def summary(self, root: str) -> dict:
        """The peer's full-set summary (``match`` true, or its buckets)."""
        _, data, _ = await self._call("GET", f"/v1/sync/x-dmfdns/summary?root={root}")
        if not isinstance(data, dict) or not isinstance(data.get("root"), str):
            raise PeerError(MALFORMED, "summary has the wrong shape")
        buckets = data.get("buckets", {})
        if data.get("match") is not True and (not isinstance(buckets, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in buckets.items())):
            raise PeerError(MALFORMED, "summary buckets have the wrong shape")
        return data

    async def bucket(self, bucket: int, after: tuple[str, str] | None, limit: int) -> dict:
        """One page of the entries of ``bucket``: ``{"records": [...], "has_more"}``."""
        path = f"/v1/sync/x-dmfdns/bucket?bucket={bucket_label(bucket)}&limit={limit}"
        if after is not None:
            path += f"&after={quote(after[0])}:{after[1]}"
        _, data, _ = await self._call("GET", path)
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise PeerError(MALFORMED, "bucket listing has the wrong shape")
        return data
