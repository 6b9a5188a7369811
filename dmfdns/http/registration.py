"""``/v1/registration/*``: self-service registration, field- and status-compatible with the
reference node (docs/compatibility.md §2.1 and 2.2).

* ``GET challenge``: ``{"challenge", "node", "expires_at", "server_x25519_pub", "version"}``;
  the challenge is single use, lives 60 s and is held in memory (at most ``max_pending``,
  oldest dropped first);
* ``POST confirm`` ``{"subject", "ed25519_spk", "challenge", "signature"}``: a per-user
  bearer token, ``{"token", "subject", "expires_at", "rate_per_sec", "rate_burst"}``;
* ``POST tsig-confirm``, the same plus optional ``"x25519_pub"`` and ``"x25519_pop"``: a TSIG
  key for DNS UPDATE, ``{"tsig_key_name", "tsig_secret_hex", "tsig_algorithm",
  "allowed_suffixes", "subject", "zone", "expires_at"}``.

Checks in the reference's order: the registration rate limit (per client, behind trusted
proxies the ``X-Forwarded-For`` client, unlike the reference), body, fields, subject, hex,
the challenge (consumed whatever follows), the signature (401), the allowlist (403), then
anti-takeover (409, ``dmfdns.store.credentials``). An unsigned request therefore learns
nothing about subjects or the allowlist. Disabled registration is not mounted: 404.
"""

import binascii
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from ..proto import authority, registration
from ..store.credentials import Credentials, CredentialError, SubjectTaken
from .endpoint import Call, Endpoint, HttpError, Reply
from .ratelimit import TokenBucketLimiter

CHALLENGE_LIFETIME = 60
RATE_LIMITED = "registration rate limit exceeded"
TAKEN = ("subject already has a live token; re-registration must be signed with the "
         "previously-registered Ed25519 key")


@dataclass(frozen=True)
class RegistrationSettings:
    node_hostname: str
    zone: str
    allowlist: tuple = ()
    credential_ttl: float = 7_776_000.0
    token_rate: float = 10.0
    token_burst: int = 50
    tsig_scope: str = "standard"
    max_pending: int = 10_000


@dataclass(frozen=True)
class Pending:
    challenge: bytes
    node: str
    expires_at: int
    server_private: bytes
    server_public: bytes


class Challenges:
    """Single-use challenges held in memory, at most ``max_pending``."""

    def __init__(self, clock, max_pending: int = 10_000):
        self.clock = clock
        self.max_pending = max_pending
        self._pending: OrderedDict[bytes, Pending] = OrderedDict()

    def issue(self, node: str) -> Pending:
        now = int(self.clock.seconds())
        private, public = registration.new_ephemeral()
        pending = Pending(secrets.token_bytes(registration.CHALLENGE_BYTES), node,
                          now + CHALLENGE_LIFETIME, private, public)
        self._drop_expired(now)
        self._pending[pending.challenge] = pending
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
        return pending

    def consume(self, challenge: bytes) -> Pending | None:
        """The pending challenge, removed; None when unknown, used or expired."""
        now = int(self.clock.seconds())
        pending = self._pending.pop(challenge, None)
        self._drop_expired(now)
        if pending is None or pending.expires_at <= now:
            return None
        return pending

    def _drop_expired(self, now: int) -> None:
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if oldest.expires_at > now:
                return
            self._pending.popitem(last=False)

    def __len__(self) -> int:
        return len(self._pending)


class RegistrationApi:
    """The three endpoints over the node's credentials."""

    def __init__(self, *, credentials: Credentials, settings: RegistrationSettings, clock,
                 limiter: TokenBucketLimiter):
        self.credentials = credentials
        self.settings = settings
        self.clock = clock
        self.limiter = limiter
        self.challenges = Challenges(clock, settings.max_pending)

    def mount(self, http) -> None:
        """Register the endpoints; each is rate limited per client by the wrapper."""
        def endpoint(methods: dict) -> Endpoint:
            return Endpoint("registration", methods, http.boundary, limiter=self.limiter,
                            limited=RATE_LIMITED)
        http.add("v1/registration/challenge", endpoint({"GET": self.challenge}))
        http.add("v1/registration/confirm", endpoint({"POST": self.confirm}))
        http.add("v1/registration/tsig-confirm", endpoint({"POST": self.tsig_confirm}))

    # --- handlers -------------------------------------------------------------------------

    def challenge(self, call: Call) -> Reply:
        pending = self.challenges.issue(self.settings.node_hostname)
        return Reply(200, {"challenge": pending.challenge.hex(), "node": pending.node,
                           "expires_at": pending.expires_at,
                           "server_x25519_pub": pending.server_public.hex(), "version": 1})

    def confirm(self, call: Call) -> Reply:
        subject, spk_hex, pending = self._verified(call.json_object())
        try:
            token, record = self.credentials.register_token(
                subject, spk_hex, now=call.now, ttl=self.settings.credential_ttl,
                rate_per_sec=self.settings.token_rate, rate_burst=self.settings.token_burst,
                remote=call.client)
        except SubjectTaken:
            raise HttpError(409, TAKEN) from None
        except CredentialError as exc:
            raise HttpError(500, str(exc)) from None
        return Reply(200, {"token": token, "subject": record.subject,
                           "expires_at": int(record.expires_at),
                           "rate_per_sec": record.rate_per_sec,
                           "rate_burst": record.rate_burst})

    def tsig_confirm(self, call: Call) -> Reply:
        body = call.json_object()
        subject, spk_hex, pending = self._verified(body)
        x25519 = self._proven_x25519(body, pending, subject)
        zone = self.settings.zone
        name = registration.tsig_key_name(subject, spk_hex, zone)
        if name is None:
            raise HttpError(400, "subject local part too long for TSIG key label")
        scope = self.settings.tsig_scope
        suffixes = authority.minted_suffixes(
            zone, subject.rpartition("@")[0], spk_hex, x25519,
            tight=scope == "tight", loose=scope == "loose")
        try:
            record = self.credentials.mint_tsig(
                name, subject, spk_hex, suffixes=suffixes, now=call.now,
                ttl=self.settings.credential_ttl, x25519_hex=x25519.hex() if x25519 else "",
                remote=call.client)
        except SubjectTaken:
            raise HttpError(409, TAKEN) from None
        except CredentialError as exc:
            raise HttpError(400, str(exc)) from None
        return Reply(200, {"tsig_key_name": record.name + ".",
                           "tsig_secret_hex": record.secret_hex,
                           "tsig_algorithm": record.algorithm,
                           "allowed_suffixes": list(record.suffixes), "subject": subject,
                           "zone": zone, "expires_at": int(record.expires_at)})

    # --- checks ---------------------------------------------------------------------------

    def _verified(self, body: dict) -> tuple[str, str, Pending]:
        """(subject, spk hex, challenge) of a signed request, in the reference's order."""
        for field in ("subject", "ed25519_spk", "challenge", "signature"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise HttpError(400, f"missing or non-string field: {field}")
        try:
            subject = registration.canonical_subject(body["subject"])
        except registration.SubjectError as exc:
            raise HttpError(400, f"subject invalid: {exc}") from None
        spk = _hex(body["ed25519_spk"], 32, "ed25519_spk")
        signature = _hex(body["signature"], 64, "signature")
        challenge = _hex(body["challenge"], 32, "challenge")
        pending = self.challenges.consume(challenge)
        if pending is None:
            raise HttpError(400, "challenge expired or unknown")
        if not registration.signature_valid(spk, signature, challenge, subject, pending.node):
            raise HttpError(401, "signature verification failed")
        if not registration.domain_allowed(subject, self.settings.allowlist):
            raise HttpError(403, "subject not in registration allowlist")
        return subject, spk.hex(), pending

    @staticmethod
    def _proven_x25519(body: dict, pending: Pending, subject: str) -> bytes | None:
        """The claimed X25519 key when its proof of possession holds; a key without a
        proof is dropped from the scope (as the reference), a wrong proof is 401."""
        claimed = body.get("x25519_pub")
        if not isinstance(claimed, str) or not claimed.strip():
            return None
        x25519 = _hex(claimed.strip().lower(), 32, "x25519_pub")
        proof = body.get("x25519_pop")
        if not isinstance(proof, str) or not proof:
            return None
        if not registration.pop_valid(pending.server_private, pending.challenge, subject,
                                      x25519, _hex(proof, 32, "x25519_pop")):
            raise HttpError(401, "x25519_pop verification failed: registrant did not prove "
                                 "possession of the claimed X25519 key")
        return x25519


def _hex(value: str, size: int, field: str) -> bytes:
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        raise HttpError(400, f"{field}: not valid hex") from None
    if len(raw) != size:
        raise HttpError(400, f"{field}: expected {size} bytes, got {len(raw)}")
    return raw
