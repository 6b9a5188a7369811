"""``/v1/sync/*``: what a node serves to its cluster peers (docs/compatibility.md §2.3).

Reference endpoints, with the reference's shapes, limits and status codes:

* ``GET /v1/sync/digest?cursor=<ts>:<name>:<hash>&limit=N`` (or legacy ``?since=<ms>``):
  change-log entries strictly after the cursor; ``limit`` defaults to 1000, is clamped to
  10000, 400 when not a positive integer;
* ``POST /v1/sync/pull {"names": [...]}`` (at most 256): every live value at each name;
* ``GET /v1/sync/cluster-manifest``: the adopted manifest ``{"wire", "seq", "exp",
  "cluster_name"}``, or 204.

A digest page, a pull answer and a bucket listing are read from the store in slices
(``DIGEST_STEP`` log entries, one name of a pull, ``LIST_STEP`` entries of a listing) within
the node's shared budget of reactor time per turn (``dmfdns.slicing``), the reactor getting
a turn between them: a peer catching up asks for pages and pulls back to back, and DNS is
answered on the same thread.

Every call is rate limited per client and then needs ``Authorization: Bearer <sync token>``
(compared in constant time); without a configured token the endpoints always answer 403
``{"error": "forbidden"}``, as the reference does.

dmfdns extensions, only for a caller that sends ``X-Dmfdns-Sync: 1`` (the answer carries it
back): digest entries and pulled records carry the version and absolute expiry, digests
include tombstones, and a pull may narrow itself with ``"hashes"``. Two endpoints of their
own serve the full-set comparison (``dmfdns.sync.fullset``):

* ``GET /v1/sync/x-dmfdns/summary[?root=<hex>]``: ``{"root", "count", "match": true}`` when
  the caller's root matches, else ``{"root", "count", "buckets": {"<2 hex>": "<hash>"}}``;
* ``GET /v1/sync/x-dmfdns/bucket?bucket=<2 hex>[&after=<name>:<hash>][&limit=N]``: that
  bucket's entries, in (name, hash) order, ``{"bucket", "records", "has_more"}``.
"""

import re
from typing import Callable

from twisted.internet import defer

from ..slicing import Slicer
from ..store.api import ChangesPage, Cursor
from ..store.changelog import parse_cursor, since_cursor
from ..sync import wire
from ..sync.fullset import MAX_LIST, parse_bucket
from ..tls_listen import peer_certificate
from .auth import BearerTokens
from .endpoint import Call, Endpoint, HttpError, Reply
from .ratelimit import TokenBucketLimiter

FORBIDDEN = "forbidden"
PULL_BYTES_CAP = 8 * 2**20      # values per pull answer; the rest is left for the next pull
DIGEST_STEP = 100               # log entries read at a time for a digest page
_CAPABLE = ((wire.CAPABILITY_HEADER.encode("ascii"), wire.CAPABILITY.encode("ascii")),)
_SINCE = re.compile(r"[0-9]{1,19}")
_AFTER = re.compile(r"([^:]{1,253}):([0-9a-f]{64})")


class SyncApi:
    """The sync endpoints of one node.

    ``current_manifest(now)`` returns the adopted ``(wire, ClusterManifest)`` or None;
    ``index`` is the node's ``FullSetIndex`` (None: the extension endpoints answer 404);
    ``slicer`` (the node's ``dmfdns.slicing.Slicer``; by default one of its own on
    ``clock``) gives the reactor a turn between the slices of a digest, a pull or a
    listing; with neither, each is answered in one piece.
    """

    def __init__(self, *, store, token: str, limiter: TokenBucketLimiter,
                 current_manifest: Callable[[float], tuple | None] = lambda now: None,
                 index=None, require_client_certificate: bool = False, clock=None,
                 slicer: Slicer | None = None):
        self.store = store
        if slicer is None and clock is not None:
            slicer = Slicer(clock)
        self.slicer = slicer
        self.require_client_certificate = require_client_certificate
        self.token = token or None
        self.limiter = limiter
        self.current_manifest = current_manifest
        self.index = index

    def mount(self, http) -> None:
        """Register the endpoints on a ``dmfdns.http.site.NodeHttp``; each is rate limited
        per client and then needs the sync token (checked by the wrapper)."""
        auth = BearerTokens((self.token,), status=403, message=FORBIDDEN,
                            closed_without_tokens=True)
        if self.require_client_certificate:
            auth = _WithClientCertificate(auth)

        def endpoint(handler: str, methods: dict) -> Endpoint:
            return Endpoint(handler, methods, http.boundary, limiter=self.limiter, auth=auth)
        http.add("v1/sync/digest", endpoint("sync_digest", {"GET": self.digest}))
        http.add("v1/sync/pull", endpoint("sync_pull", {"POST": self.pull}))
        http.add("v1/sync/cluster-manifest", endpoint("sync_manifest", {"GET": self.manifest}))
        if self.index is not None:
            http.add("v1/sync/x-dmfdns/summary",
                     endpoint("sync_summary", {"GET": self.summary}))
            http.add("v1/sync/x-dmfdns/bucket", endpoint("sync_bucket", {"GET": self.bucket}))

    @staticmethod
    def _extended(call: Call) -> bool:
        """True when the caller speaks dmfdns sync (asks for the extensions)."""
        return call.header(wire.CAPABILITY_HEADER) == wire.CAPABILITY

    # --- reference endpoints --------------------------------------------------------------

    def digest(self, call: Call) -> defer.Deferred:
        extended = self._extended(call)
        cursor = self._cursor(call)
        limit = wire.parse_limit(call.query("limit"))
        if limit is None:
            raise HttpError(400, "invalid limit")
        return defer.ensureDeferred(self._digest(call, cursor, limit, extended))

    async def _digest(self, call: Call, cursor: Cursor, limit: int, extended: bool) -> Reply:
        """One page of ``limit`` read ``DIGEST_STEP`` entries at a time: each step starts
        where the previous one left the cursor, so together they are the one page."""
        changes, at, until = [], cursor, self._deadline()
        while True:
            page = self.store.changes_after(at, min(DIGEST_STEP, limit - len(changes)),
                                            now=call.now, tombstones=extended)
            changes += page.changes
            if len(changes) >= limit or not page.has_more or page.next_cursor == at:
                break
            at = page.next_cursor
            until = await self._turn(until)
        whole = ChangesPage(tuple(changes), page.has_more, page.next_cursor)
        body = wire.digest_body(whole, cursor, call.now, extended)
        return Reply(200, body, headers=_CAPABLE if extended else ())

    def _deadline(self) -> float:
        return self.slicer.deadline() if self.slicer is not None else 0.0

    async def _turn(self, until: float) -> float:
        """Give the reactor a turn once the slice that ends at ``until`` has run its time;
        when the next slice ends."""
        if self.slicer is None:
            return until
        return await self.slicer.turn(until)

    @staticmethod
    def _cursor(call: Call) -> Cursor:
        text, since = call.query("cursor"), call.query("since")
        if text is not None:
            cursor = parse_cursor(text)
            if cursor is None:
                raise HttpError(400, "invalid cursor")
            return cursor
        if since is not None:
            if not _SINCE.fullmatch(since) or int(since) >= 2**63:
                raise HttpError(400, "invalid since")
            return since_cursor(int(since))
        return Cursor()

    def pull(self, call: Call) -> defer.Deferred:
        extended = self._extended(call)
        request = wire.parse_pull_request(call.json_object())
        if isinstance(request, str):
            raise HttpError(400, request)
        return defer.ensureDeferred(self._pull(call, *request, extended))

    async def _pull(self, call: Call, names: list, hashes, extended: bool) -> Reply:
        records, size, until = [], 0, self._deadline()
        for at, name in enumerate(names):
            if at:
                until = await self._turn(until)
            for change in self.store.changes_for(name, call.now):
                if size > PULL_BYTES_CAP:
                    break
                if (change.deleted and not extended) or (
                        extended and hashes is not None and change.value_hash not in hashes):
                    continue
                records.append(wire.pulled_record(change, call.now, extended))
                size += len(change.value)
        return Reply(200, {"records": records}, headers=_CAPABLE if extended else ())

    def manifest(self, call: Call) -> Reply:
        current = self.current_manifest(call.now)
        if current is None:
            return Reply(204)
        value, record = current
        return Reply(200, {"wire": value, "seq": record.seq, "exp": record.exp,
                           "cluster_name": record.cluster_name})

    # --- dmfdns extensions ----------------------------------------------------------------

    def _ready_index(self, call: Call):
        # One bounded slice here; the node's cluster service builds the rest in slices.
        if not self.index.refresh(call.now):
            raise HttpError(503, "the full-set index is still being built")
        return self.index

    def summary(self, call: Call) -> Reply:
        root = call.query("root")
        return Reply(200, self._ready_index(call).summary(root), headers=_CAPABLE)

    def bucket(self, call: Call) -> Reply:
        bucket = parse_bucket(call.query("bucket"))
        if bucket is None:
            raise HttpError(400, "invalid bucket")
        limit = wire.parse_limit(call.query("limit"))
        if limit is None:
            raise HttpError(400, "invalid limit")
        after = None
        if call.query("after") is not None:
            match = _AFTER.fullmatch(call.query("after"))
            if match is None:
                raise HttpError(400, "invalid after")
            after = (match.group(1), match.group(2))
        steps = self._ready_index(call).listing_steps(bucket, after, min(limit, MAX_LIST),
                                                      round(call.now * 1000))
        return defer.ensureDeferred(self._listing(steps))

    async def _listing(self, steps) -> Reply:
        until = self._deadline()
        for listing in steps:
            if listing is None:
                until = await self._turn(until)
        return Reply(200, listing, headers=_CAPABLE)


class _WithClientCertificate:
    """Mutual TLS on top of the token: the TLS layer verified the client's certificate
    against ``[http] tls_client_ca_file``; a caller without one (plain HTTP, or HTTPS
    without a certificate) is refused."""

    def __init__(self, token_auth):
        self.token_auth = token_auth

    def __call__(self, call) -> None:
        self.token_auth(call)
        if peer_certificate(call.request.transport) is None:
            raise HttpError(403, "client certificate required")
