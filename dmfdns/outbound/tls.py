"""Certificate verification for outbound HTTPS (Twisted's TLS, pyOpenSSL, service-identity).

``TlsPolicy`` is the ``IPolicyForHTTPS`` of the one outbound client: every ``https://``
origin is verified — the chain against the system trust store, or a CA file given for all
origins or for one origin (a private cluster), the name or IP address against the
certificate with service-identity (RFC 6125; RFC 9110 section 4.3.4) — TLS 1.2 at least,
with an optional client certificate (mutual TLS between peers). Nothing falls back to
clear text: a URL's scheme is the only thing that picks TLS.

OpenSSL reports every failed chain as "certificate verify failed", and Twisted's verify
callback (which also checks the name with service-identity, reported as its own
``VerificationError``) must stay as it is. To say which check failed, the creator keeps
the last few connections made per ``(host, port)``; ``cause_for(host, port, now)`` reads
the chain the server sent on the newest that has one (several may be in flight): a certificate outside its validity period is
``tls_expired``, any other refused chain ``tls_untrusted``.
"""

import ipaddress
import re
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from .errors import TLS_EXPIRED, TLS_UNTRUSTED

KEPT_CONNECTIONS = 8
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class TlsConfigError(Exception):
    """A CA or certificate file cannot be used (one line for the operator)."""


def chain_cause(chain, now: float) -> tuple[str, str]:
    """``(cause, text)`` for a refused chain (cryptography certificates, leaf first)."""
    for depth, certificate in enumerate(chain or ()):
        which = "the certificate" if depth == 0 else f"certificate {depth} of its chain"
        start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        if now > end.timestamp():
            return TLS_EXPIRED, f"{which} expired at {end:%Y-%m-%d %H:%M} UTC"
        if now < start.timestamp():
            return TLS_EXPIRED, f"{which} is not valid before {start:%Y-%m-%d %H:%M} UTC"
    return TLS_UNTRUSTED, "the certificate chain does not end at a trusted CA"


def load_trust(path) -> object:
    """An ``IOpenSSLTrustRoot`` holding every certificate of the PEM file ``path``."""
    try:
        data = open(path, "rb").read()
    except OSError as exc:
        raise TlsConfigError(f"CA file {path}: cannot read: {exc.strerror}") from None
    blocks = _PEM_CERT.findall(data)
    if not blocks:
        raise TlsConfigError(f"CA file {path}: no PEM certificate in it")
    try:
        return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])
    except (SSL.Error, crypto.Error) as exc:
        raise TlsConfigError(f"CA file {path}: not a certificate ({exc})") from None


def load_client_certificate(cert_file, key_file) -> dict:
    """The certificate (PEM, chain allowed: the first is used) and key a client presents,
    as the ``certificate`` and ``privateKey`` options of Twisted's ``CertificateOptions``."""
    try:
        cert, key = open(cert_file, "rb").read(), open(key_file, "rb").read()
    except OSError as exc:
        raise TlsConfigError(f"{exc.filename}: cannot read: {exc.strerror}") from None
    try:
        certificate = x509.load_pem_x509_certificates(cert)[0]
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsConfigError(f"client certificate {cert_file} / key {key_file}: {exc}") \
            from None
    if certificate.public_key().public_bytes(*_SPKI) != \
            private_key.public_key().public_bytes(*_SPKI):
        raise TlsConfigError(f"client certificate {cert_file} does not match the key "
                             f"{key_file}")
    return {"certificate": certificate, "privateKey": private_key}


@dataclass(frozen=True)
class TlsSettings:
    """Outbound TLS: ``ca_file`` for every origin (None: the system trust store),
    ``origin_ca_files`` for some (``"https://host:port"`` -> file), and an optional client
    certificate and key (PEM files) presented to every HTTPS origin."""

    ca_file: object = None
    origin_ca_files: dict = field(default_factory=dict)
    client_cert_file: object = None
    client_key_file: object = None


@implementer(IPolicyForHTTPS)
class TlsPolicy:
    def __init__(self, settings: TlsSettings = TlsSettings()):
        self._default = load_trust(settings.ca_file) if settings.ca_file else None
        self._by_origin = {origin.lower().rstrip("/"): load_trust(path)
                           for origin, path in settings.origin_ca_files.items()}
        self._client = {}
        if settings.client_cert_file or settings.client_key_file:
            self._client = load_client_certificate(settings.client_cert_file,
                                                   settings.client_key_file)
        self._last: dict = {}    # (host, port) -> deque of the last TLS connections to it

    def creatorForNetloc(self, hostname: bytes, port: int):
        host = hostname.decode("ascii")
        trust = self._by_origin.get(_origin(host, port), self._default)
        options = ssl.optionsForClientTLS(
            host, trustRoot=trust,
            extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2,
                                     **self._client})
        return _KeepingCreator(options, self._last, (host.lower(), port))

    def cause_for(self, host: str, port: int, now: float):
        """``(cause, text)`` for the chain ``host:port`` last sent (None: no chain seen)."""
        for connection in reversed(self._last.get((host.lower(), port), ())):
            chain = connection.get_peer_cert_chain(as_cryptography=True)
            if chain:
                return chain_cause(chain, now)
        return None


def _origin(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}".lower()


@implementer(IOpenSSLClientConnectionCreator)
class _KeepingCreator:
    """Twisted's connection creator, keeping the last connections per origin (to read the
    chain a refused server sent; at most KEPT_CONNECTIONS per origin)."""

    def __init__(self, inner, last: dict, key: tuple):
        self._inner, self._last, self._key = inner, last, key

    def clientConnectionForTLS(self, tls_protocol):
        connection = self._inner.clientConnectionForTLS(tls_protocol)
        kept = self._last.setdefault(self._key, deque(maxlen=KEPT_CONNECTIONS))
        kept.append(connection)
        return connection


# Names that never resolve on the public internet: RFC 6761 special-use (test, example,
# invalid, localhost), RFC 6762 local, RFC 8375 home.arpa, and the de facto internal/lan.
_PRIVATE_SUFFIXES = (".test", ".example", ".invalid", ".localhost", ".local", ".home.arpa",
                     ".internal", ".lan")


def plain_http_outside(url: str) -> bool:
    """Whether ``url`` is ``http://`` to a host that may be on the internet: a bearer
    token sent there would cross networks in clear text. Inside are loopback, private,
    link-local, shared and documentation addresses (not ``is_global``, RFC 6890), a
    single-label host name (a container or LAN name) and the special-use names above;
    any other host name counts as outside (where it points is not known here)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").rstrip(".").lower()
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        pass
    return "." in host and not (host == "localhost" or host.endswith(_PRIVATE_SUFFIXES))
