"""Who may write which record over HTTP: the reference node's three auth modes.

* ``open``: anyone may write (the config refuses it on a non-loopback listener unless the
  operator explicitly allows it);
* ``legacy``: only the operator token;
* ``multi-tenant``: the operator token, or a per-user token (``dmfdns.store.credentials``) that
  may write by owner-name class (docs/compatibility.md §2.2):

  - **owner-exclusive**: the token subject's own identity, prekey and rotation names:
    ``id-<hex16(H(user))>``, ``prekeys.id-<hex12(H(user))>``, ``rotate.id-<hex16>``, and for a
    ``user@domain`` subject ``dmp.<user>.<domain>`` and ``rotate.dmp.<user>.<domain>``;
    publish and delete;
  - **shared**: mailbox slots, chunks and claims (``slot-N.mb-*``, ``chunk-NNNN-*``,
    ``claim-N.mb-*``): any live token may publish; deleting is for the operator only, so
    one user cannot wipe another's mail;
  - **operator-only**: everything else (``cluster.``, ``_dmp.``, heartbeats, plain names).

Reads of ``/v1/records`` need the operator token whenever one is configured, as in the
reference. Tokens are compared in constant time (``hmac.compare_digest``); a per-user token
also has its own request bucket.

Each policy here is an endpoint's declared ``auth`` (``dmfdns.http.endpoint``): the wrapper
calls it with the request after the per-client rate limit and before the handler.
``WriteAuth.check`` guards ``/v1/records``; ``BearerTokens`` guards endpoints that a few fixed
tokens open (``/v1/sync/*``: the sync token; ``/metrics``: the metrics and operator tokens).
"""

import hmac
from typing import Callable

from ..proto import authority, names
from .endpoint import HttpError
from .ratelimit import TokenBucketLimiter
from ..store.credentials import CredentialError, Credentials, TokenRecord

OPEN = "open"
LEGACY = "legacy"
MULTI_TENANT = "multi-tenant"
MODES = (OPEN, LEGACY, MULTI_TENANT)
PUBLISH = authority.PUBLISH
DELETE = authority.DELETE

UNAUTHORIZED = "unauthorized"
TOKEN_RATE_LIMITED = "per-token rate limit exceeded"

def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (RFC 6750 section
    2.1; the scheme is case-insensitive), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time equality of two tokens; never true when either is missing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))


class WriteAuth:
    """The auth decisions of the records API for one node."""

    def __init__(self, mode: str, *, operator_token: str = "", tokens: Credentials | None = None,
                 clock: Callable[[], float]):
        if mode not in MODES:
            raise ValueError(f"auth mode must be one of {', '.join(MODES)}")
        if mode == MULTI_TENANT and tokens is None:
            raise ValueError("multi-tenant auth needs the credentials store")
        self.mode = mode
        self._operator_token = operator_token or None
        self._tokens = tokens
        self._clock = clock
        self._token_buckets: dict[str, TokenBucketLimiter] = {}

    def check(self, call) -> object:
        """The ``/v1/records/{name}`` policy: a read needs the operator token when one is
        set; a POST (publish) or DELETE needs a credential that may do that to the name
        (``call.target``). Returns the write credential (None for a read)."""
        token = bearer_token(call.header("Authorization"))
        if call.method in ("GET", "HEAD"):
            self.authorize_read(token)
            return None
        op = PUBLISH if call.method == "POST" else DELETE
        return self.credential(token, names.canonical(call.target), op)

    def set_operator_token(self, token: str) -> None:
        """A new operator token from the next request on (a reload); "" = none."""
        self._operator_token = token or None

    def is_operator(self, token: str | None) -> bool:
        return same_secret(token, self._operator_token)

    def authorize_read(self, token: str | None) -> None:
        """Raise 401 unless reads are open or ``token`` is the operator's."""
        if self._operator_token is not None and not self.is_operator(token):
            raise HttpError(401, UNAUTHORIZED)

    def credential(self, token: str | None, name: str | None, op: str):
        """The write credential of ``token`` (``dmfdns.proto.authority``) once it may
        ``op`` the canonical owner ``name`` (None: a name that did not parse,
        operator-only); else 401, or 429 for a throttled user token."""
        if self.mode == OPEN or self.is_operator(token):
            return authority.ANYONE
        if self.mode == LEGACY or token is None:
            raise HttpError(401, UNAUTHORIZED)
        try:
            record = self._tokens.lookup_token(token)
        except CredentialError:
            raise HttpError(503, "token store unavailable") from None
        if record is None or not record.live(self._clock()):
            raise HttpError(401, UNAUTHORIZED)
        credential = authority.UserToken(record.subject)
        if not authority.permits(credential, op, name):
            raise HttpError(401, UNAUTHORIZED)
        if not self._bucket(record).allow(record.hash):
            raise HttpError(429, TOKEN_RATE_LIMITED)
        return credential

    def authorize_write(self, token: str | None, name: str | None, op: str) -> None:
        """``credential`` for callers that only need the decision."""
        self.credential(token, name, op)

    def _bucket(self, record: TokenRecord) -> TokenBucketLimiter:
        bucket = self._token_buckets.get(record.hash)
        if bucket is None or (bucket.rate, bucket.burst) != (record.rate_per_sec,
                                                            record.rate_burst):
            bucket = TokenBucketLimiter(record.rate_per_sec, record.rate_burst, self._clock,
                                        max_keys=1)
            self._token_buckets[record.hash] = bucket
        return bucket


class BearerTokens:
    """An endpoint that any of ``tokens`` opens (``Authorization: Bearer``); otherwise
    ``status`` with ``{"error": message}`` and, with ``challenge``, ``WWW-Authenticate:
    Bearer`` (RFC 6750 section 3). Without tokens the endpoint is open, or refuses every
    call when ``closed_without_tokens`` (the reference's sync endpoints)."""

    def __init__(self, tokens, *, status: int = 401, message: str = UNAUTHORIZED,
                 challenge: bool = False, closed_without_tokens: bool = False):
        self.tokens = tuple(t for t in tokens if t)
        self.status = status
        self.message = message
        self.headers = ((b"WWW-Authenticate", b"Bearer"),) if challenge else ()
        self.closed_without_tokens = closed_without_tokens

    def __call__(self, call) -> None:
        if not self.tokens and not self.closed_without_tokens:
            return None
        given = bearer_token(call.header("Authorization"))
        # Compare against every token so the time taken does not say which one matched.
        if sum(same_secret(given, token) for token in self.tokens) == 0:
            raise HttpError(self.status, self.message, headers=self.headers)
        return None
