"""Self-service registration: the pure parts (docs/compatibility.md §2.2, "Registration").

A client fetches a challenge (32 random bytes, with the node's host name and an ephemeral
X25519 public key), signs ``challenge || subject || node hostname || 0x01`` with its
Ed25519 key and sends it back. For a TSIG key it may also prove that it holds an X25519
key: ``HMAC-SHA256(X25519(client, server ephemeral), challenge || subject || x25519_pub)``.
Everything here is byte-compatible with the reference node and its clients.
"""

import hashlib
import hmac
import re
import unicodedata

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from . import signing

PROTOCOL_VERSION = b"\x01"
CHALLENGE_BYTES = 32
KEY_LABEL_MAX = 63
_SUBJECT = re.compile(
    r"[a-z0-9][a-z0-9._+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")


class SubjectError(ValueError):
    """A subject that is not ``local@fqdn`` in ASCII after NFKC; the message says why."""


def canonical_subject(raw) -> str:
    """NFKC, trimmed, lowercase, ASCII, ``local@fqdn`` (the reference's rule)."""
    if not isinstance(raw, str) or not raw:
        raise SubjectError("subject must be a non-empty string")
    text = unicodedata.normalize("NFKC", raw).strip().lower()
    if not text.isascii():
        raise SubjectError("subject must be ASCII")
    if len(text) > 253 or not _SUBJECT.fullmatch(text):
        raise SubjectError(f"subject does not match <local>@<fqdn> shape: {raw[:80]!r}")
    return text


def signed_payload(challenge: bytes, subject: str, node_hostname: str) -> bytes:
    return challenge + subject.encode("utf-8") + node_hostname.encode("utf-8") + PROTOCOL_VERSION


def signature_valid(spk: bytes, signature: bytes, challenge: bytes, subject: str,
                    node_hostname: str) -> bool:
    """Ed25519 over the signed payload; low-order keys never verify (``signing``)."""
    return signing.verify(spk, signature, signed_payload(challenge, subject, node_hostname))


def new_ephemeral() -> tuple[bytes, bytes]:
    """(private, public) raw X25519 keys for one challenge."""
    private = X25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    return (private.private_bytes(raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption()),
            private.public_key().public_bytes(raw, serialization.PublicFormat.Raw))


def pop_valid(server_private: bytes, challenge: bytes, subject: str, x25519_pub: bytes,
              pop: bytes) -> bool:
    """Whether ``pop`` proves possession of the X25519 key ``x25519_pub``."""
    try:
        shared = X25519PrivateKey.from_private_bytes(server_private).exchange(
            X25519PublicKey.from_public_bytes(x25519_pub))
    except ValueError:        # an all-zero shared secret (low-order point), a bad length
        return False
    expected = hmac.new(shared, challenge + subject.encode("utf-8") + x25519_pub,
                        hashlib.sha256).digest()
    return hmac.compare_digest(expected, pop)


def domain_allowed(subject: str, allowlist) -> bool:
    allowed = {d.strip().lower().rstrip(".") for d in allowlist if d.strip()}
    return not allowed or subject.rpartition("@")[2] in allowed


def tsig_key_name(subject: str, spk_hex: str, zone: str) -> str | None:
    """``<local>-<spk[:8]>-<sha256(subject)[:6]>.<zone>``, the reference's key name
    (canonical, no trailing dot); None when the first label would pass 63 bytes."""
    local = subject.rpartition("@")[0]
    tag = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:6]
    label = f"{local}-{spk_hex.lower()[:8]}-{tag}"
    if not local or len(label) > KEY_LABEL_MAX:
        return None
    return f"{label}.{zone}"
