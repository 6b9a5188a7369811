"""Calls to one peer's ``/v1/sync/*``: bounded in time and size, never trusted.

The transport is the one outbound client (``dmfdns.outbound.client.HttpClient``: one
deadline per call, a cap on the answer, verified HTTPS) or, in tests, any object with its
``request(method, url, headers, body)`` method. ``PeerClient`` turns the calls into
validated values (``dmfdns.sync.wire``) or an ``OutboundError`` (``PeerError`` here) whose
``cause`` is the metric label of ``dmfdns_sync_errors``. Every request carries the sync
bearer token and the capability header; whether the answer carries it back tells a dmfdns
peer from a ``dnsmesh`` one.
"""

import json
from urllib.parse import quote

from ..outbound.client import HttpResponse  # noqa: F401  (what a transport answers)
from ..outbound.errors import (MALFORMED, UNREACHABLE,  # noqa: F401  (test transports)
                               OutboundError, check_status)
from ..store.api import Cursor
from ..store.changelog import format_cursor
from . import wire
from .fullset import bucket_label

PeerError = OutboundError


# --- the sync calls -----------------------------------------------------------------------

class PeerClient:
    """The sync calls to the peer at ``base_url`` (``http://host:port``). A digest page or
    a pull answer is validated in steps (``wire.STEP`` entries); with ``slicer`` (the
    node's ``dmfdns.slicing.Slicer``) the steps run within its shared budget of reactor
    time, the reactor getting a turn when it is spent."""

    def __init__(self, transport, base_url: str, token: str, slicer=None):
        self.transport = transport
        self.slicer = slicer
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
        check_status(response, ok=(200, 204), what=path)
        if response.status == 204:
            return 204, None, False
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
        page = await self._stepped(wire.parse_digest_steps(
            data, after=cursor, limit=limit, now_ms=now_ms, extended=extended))
        if page is None:
            raise PeerError(MALFORMED, "digest page has the wrong shape")
        return page, extended

    async def pull(self, names: list[str], hashes: list[str] | None, now_ms: int):
        """``(records, rejection reasons, extended)`` for ``names`` (at most 256)."""
        body = {"names": names}
        if hashes is not None:
            body["hashes"] = hashes
        _, data, extended = await self._call("POST", "/v1/sync/pull", body)
        parsed = await self._stepped(wire.parse_pull_steps(data, now_ms=now_ms,
                                                           extended=extended))
        if parsed is None:
            raise PeerError(MALFORMED, "pull answer has the wrong shape")
        return parsed[0], parsed[1], extended

    async def _stepped(self, steps):
        """Run a ``wire`` ``*_steps`` parser, pausing between its steps when the slice is
        spent; its result."""
        result, until = None, self.slicer.deadline() if self.slicer is not None else 0.0
        for result in steps:
            if result is None and self.slicer is not None:
                until = await self.slicer.turn(until)
        return result

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
