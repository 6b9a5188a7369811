"""The one error set of outbound HTTP: every failed call is an ``OutboundError`` whose
``cause`` is one of ``CAUSES``, a short label fit for a metric (``dmfdns_sync_errors``) and
for a log line, with a human ``detail``.

``classify(failure, tls_cause)`` turns whatever Twisted reports (a refused connection, a
``ResponseNeverReceived`` wrapping a TLS alert, a body cut short) into that set.
"""

import json

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error as net_error

from .body import BodyCutShort, BodyTooLarge

TIMEOUT = "timeout"                  # no complete answer before the deadline
REFUSED = "refused"                  # the peer's host said no (TCP RST)
UNREACHABLE = "unreachable"          # no route, no such host, connection lost mid-answer
TLS_UNTRUSTED = "tls_untrusted"      # the certificate chain does not end at a trusted CA
TLS_WRONG_NAME = "tls_wrong_name"    # the certificate is not for the host we asked for
TLS_EXPIRED = "tls_expired"          # the certificate is expired or not yet valid
TLS = "tls"                          # any other TLS failure (protocol version, alert...)
FORBIDDEN = "forbidden"              # HTTP 401 or 403: the token (or certificate) was refused
STATUS = "status"                    # another HTTP status the caller did not expect
TOO_LARGE = "too_large"              # the answer is longer than the caller's cap
MALFORMED = "malformed"              # the answer's body is not what the call expects
CAUSES = (TIMEOUT, REFUSED, UNREACHABLE, TLS_UNTRUSTED, TLS_WRONG_NAME, TLS_EXPIRED, TLS,
          FORBIDDEN, STATUS, TOO_LARGE, MALFORMED)
TLS_CAUSES = (TLS_UNTRUSTED, TLS_WRONG_NAME, TLS_EXPIRED, TLS)


class OutboundError(Exception):
    """A call that gave nothing usable; ``cause`` is one of CAUSES."""

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(detail or cause)
        self.cause = cause
        self.detail = detail or cause

    @property
    def reason(self) -> str:
        """The metric label (the sync code's name for the cause)."""
        return self.cause


def error_text(body: bytes) -> str:
    """The ``error`` field of a JSON error body, else a short excerpt of the body."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return body[:120].decode("utf-8", "replace").strip() or "no body"
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return json.dumps(data)[:120]


def check_status(response, ok=(200,), what: str = "") -> None:
    """Raise FORBIDDEN for 401/403 and STATUS for any other status not in ``ok``;
    ``what`` (a path) prefixes the detail."""
    if response.status in ok:
        return
    cause = FORBIDDEN if response.status in (401, 403) else STATUS
    prefix = f"{what}: " if what else ""
    raise OutboundError(cause, f"{prefix}HTTP {response.status}: {error_text(response.body)}")


def classify(failure, tls_cause=lambda: None) -> OutboundError:
    """The OutboundError for ``failure``. ``tls_cause()`` names why the last certificate
    from this origin failed verification ((cause, text) or None): OpenSSL reports only
    "certificate verify failed", the verify callback knows which check it was."""
    for exc in _reasons(failure.value):
        found = _cause_of(exc, tls_cause)
        if found is not None:
            return found
    return OutboundError(UNREACHABLE, _text(failure.value))


def _reasons(exc):
    """``exc`` and, for Twisted's wrapper errors (ResponseNeverReceived, ResponseFailed,
    RequestTransmissionFailed), the errors they wrap."""
    yield exc
    for reason in getattr(exc, "reasons", None) or ():
        yield from _reasons(reason.value)


def _cause_of(exc, tls_cause):
    if isinstance(exc, OutboundError):
        return exc
    if isinstance(exc, BodyTooLarge):
        return OutboundError(TOO_LARGE, str(exc))
    if isinstance(exc, BodyCutShort):
        return OutboundError(UNREACHABLE, str(exc))
    if isinstance(exc, VerificationError):
        return OutboundError(TLS_WRONG_NAME, f"TLS: the certificate is not for this host "
                                             f"({_text(exc)})")
    if isinstance(exc, SSL.Error):
        known = tls_cause() if "certificate verify failed" in str(exc) else None
        if known is not None:
            return OutboundError(known[0], f"TLS: {known[1]}")
        return OutboundError(TLS, f"TLS handshake failed: {_text(exc)}")
    if isinstance(exc, net_error.ConnectionRefusedError):
        return OutboundError(REFUSED, "connection refused")
    if isinstance(exc, (net_error.TCPTimedOutError, net_error.TimeoutError)):
        return OutboundError(TIMEOUT, "connect timed out")
    if isinstance(exc, net_error.ConnectError):
        return OutboundError(UNREACHABLE, _text(exc))
    return None


def _text(exc) -> str:
    reasons = getattr(exc, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() for r in reasons)
    return str(exc) or type(exc).__name__
