"""Self-service registration at a public node (docs/http-api.md, "Registration").

``register`` fetches a challenge, signs ``challenge || subject || node hostname || 0x01``
with the user's Ed25519 key and confirms it: ``/confirm`` answers a bearer token for HTTP
writes, ``/tsig-confirm`` a TSIG key for DNS UPDATE. For a TSIG key it also proves the
user's X25519 key (so the key's scope covers the user's own mailbox). The same exchange as
``dnsmesh register`` and ``dnsmesh tsig register``.
"""

import hashlib
import hmac
import json

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ..outbound.errors import OutboundError
from ..proto import registration


class RegistrationFailed(Exception):
    """The node refused the registration, or could not be reached (one line)."""


async def register(http, base_url: str, keys, subject: str, *, tsig: bool = False) -> dict:
    """The node's JSON answer to the confirmation (see the module docstring)."""
    try:
        subject = registration.canonical_subject(subject)
    except registration.SubjectError as exc:
        raise RegistrationFailed(str(exc)) from None
    base = base_url.rstrip("/")
    issued = await _call(http, "GET", f"{base}/v1/registration/challenge")
    try:
        challenge = bytes.fromhex(issued["challenge"])
        node = str(issued["node"])
        server_public = bytes.fromhex(issued["server_x25519_pub"])
    except (KeyError, TypeError, ValueError):
        raise RegistrationFailed(f"{base}: malformed challenge {issued!r}") from None
    body = {"subject": subject, "ed25519_spk": keys.ed25519_public.hex(),
            "challenge": challenge.hex(),
            "signature": keys.signer.sign(registration.signed_payload(challenge, subject,
                                                                      node)).hex()}
    if tsig:
        body["x25519_pub"] = keys.x25519_public.hex()
        body["x25519_pop"] = _proof(keys, server_public, challenge, subject).hex()
    path = "tsig-confirm" if tsig else "confirm"
    return await _call(http, "POST", f"{base}/v1/registration/{path}", body)


def _proof(keys, server_public: bytes, challenge: bytes, subject: str) -> bytes:
    private = X25519PrivateKey.from_private_bytes(keys.x25519_private)
    shared = private.exchange(X25519PublicKey.from_public_bytes(server_public))
    return hmac.new(shared, challenge + subject.encode("utf-8") + keys.x25519_public,
                    hashlib.sha256).digest()


async def _call(http, method: str, url: str, body=None) -> dict:
    payload = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    try:
        response = await http.request(method, url, headers, payload)
    except OutboundError as exc:
        raise RegistrationFailed(f"{url}: {exc}") from None
    try:
        data = json.loads(response.body or b"{}")
    except ValueError:
        data = {}
    if response.status != 200:
        error = data.get("error") if isinstance(data, dict) else None
        raise RegistrationFailed(f"{url}: HTTP {response.status}"
                                 + (f": {error}" if error else ""))
    if not isinstance(data, dict):
        raise RegistrationFailed(f"{url}: the answer is not a JSON object")
    return data
