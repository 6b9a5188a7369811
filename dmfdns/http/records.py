"""``/v1/records/{name}``: the reference node's record API (docs/compatibility.md §2.1).

* ``GET``: 200 ``{"name", "values"}``, or 404 with ``"values": []``;
* ``POST`` ``{"value": str, "ttl": int > 0}`` (ttl defaults to 300, no Content-Type needed):
  201 ``{"ok": true}`` once the value is durably stored;
* ``DELETE`` with an optional ``{"value": str}`` (absent: the whole RRset): 204, or 404 with an
  empty body when nothing matched.

The check order is the reference's (rate limit, auth, body, types, then the caps and
validators), so the same request gets the same status and error text; the wrapper
(``dmfdns.http.endpoint``) does the first two from what the endpoint declares: the name in
the path, the per-client bucket and ``WriteAuth.check``. The write itself goes
through the node's one write service (``dmfdns.store.writes``), shared with every other
write path. Unlike the reference, names are
canonical (lowercase) at ingress and must lie in a served zone (400 otherwise), and every
``v=dmp1`` value is verified before it is stored. An operator pushes a new cluster manifest by
POSTing the signed value to ``/v1/records/cluster.<base>`` with the operator token.
"""

from ..proto import names
from ..proto import admission
from ..proto.admission import Refusal
from ..store.writes import UNAUTHORIZED, WriteRequest, WriteService
from .auth import DELETE, PUBLISH, WriteAuth
from .endpoint import INVALID_BODY, Boundary, Call, Endpoint, HttpError, Reply
from .ratelimit import TokenBucketLimiter

DEFAULT_TTL = 300
OUTSIDE_ZONES = "record name is outside the served zones"


class RecordsApi:
    """The handlers of ``/v1/records/{name}`` over one store. Writes are admitted by
    ``writes`` and committed by ``committer`` (the node's ``dmfdns.group_commit``), so a
    201/204 goes out once the write's group commit is durable."""

    def __init__(self, *, store, writes: WriteService, auth: WriteAuth,
                 limiter: TokenBucketLimiter, committer):
        self.store = store
        self.writes = writes
        self.committer = committer
        self.zones = writes.zones
        self.auth = auth
        self.limiter = limiter

    def endpoint(self, boundary: Boundary) -> Endpoint:
        return Endpoint("records", {"GET": self.get, "POST": self.post,
                                    "DELETE": self.delete}, boundary,
                        parses=record_name, limiter=self.limiter, auth=self.auth.check)

    # --- handlers -------------------------------------------------------------------------

    def get(self, call: Call) -> Reply:
        name = self._served_name(call.target)
        values = [entry.value for entry in self.store.get(name, call.now)]
        return Reply(200 if values else 404, {"name": name, "values": values})

    def post(self, call: Call) -> Reply:
        body = call.json_object()
        value, ttl = body.get("value"), body.get("ttl", DEFAULT_TTL)
        if not isinstance(value, str) or isinstance(ttl, bool) or not isinstance(ttl, int) \
                or ttl <= 0:
            raise HttpError(400, admission.TTL_TEXT)
        return self._write(call, WriteRequest(PUBLISH, call.target, value, ttl)).addCallback(
            lambda _changed: Reply(201, {"ok": True}))

    def delete(self, call: Call) -> Reply:
        value = call.json_object().get("value")
        if value is not None and not isinstance(value, str):
            raise HttpError(400, INVALID_BODY)
        return self._write(call, WriteRequest(DELETE, call.target, value)).addCallback(
            lambda changed: Reply(204 if changed else 404))

    def _write(self, call: Call, request: WriteRequest):
        """Admit ``request`` with the caller's credential (a refusal raises HttpError now),
        then hand it to the group commit: the Deferred fires with the values it changed
        once that is durable."""
        (result,) = self.writes.admit([request], now=call.now, path="http",
                                      credential=call.credential)
        _raise_refusal(result)
        return self.committer.submit(result)

    # --- checks ---------------------------------------------------------------------------

    def _served_name(self, raw: str) -> str:
        name = names.canonical(raw)
        if name is None:
            raise HttpError(400, admission.INVALID_NAME_TEXT)
        if not any(names.within(name, zone) for zone in self.zones):
            raise HttpError(400, OUTSIDE_ZONES)
        return name


def record_name(args: list) -> str:
    """The name of ``/v1/records/<name>`` (URL-decoded, one trailing ``/`` allowed)."""
    if args and args[-1] == "" and len(args) == 2:
        args = args[:1]
    if len(args) != 1 or not args[0].strip():
        raise HttpError(404, "not found")
    return args[0].strip()


def _raise_refusal(result) -> None:
    """The HTTP status of a refused write (the reference's: 413 for a full RRset)."""
    if isinstance(result, Refusal):
        status = {admission.RRSET_FULL: 413, UNAUTHORIZED: 401}.get(result.reason, 400)
        raise HttpError(status, result.message)
