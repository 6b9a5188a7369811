"""Certificate verification for outbound HTTPS (Twisted's TLS, pyOpenSSL, service-identity).

``TlsPolicy`` is the ``IPolicyForHTTPS`` of the one outbound client: every ``https://``
origin is verified — the chain against the system trust store, or a CA file given for all
origins or for one origin (a private cluster), the name or IP address against the
certificate with service-identity (RFC 6125; RFC 9110 section 4.3.4) — TLS 1.2 at least,
with an optional client certificate (mutual TLS between peers). Nothing falls back to
clear text: a URL's scheme is the only thing that picks TLS.

OpenSSL reports every failed chain as "certificate verify failed". To say which check
failed, a verify callback on each connection notes the X.509 error of the rejected
certificate per ``(host, port)``; ``cause_for(host, port)`` gives it to the classifier.
"""

import re
from dataclasses import dataclass, field

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from .errors import TLS, TLS_EXPIRED, TLS_UNTRUSTED

# X.509 verification results (OpenSSL's X509_V_ERR_*, openssl-verify(1) "Diagnostics").
_EXPIRED = {9: "the certificate is not yet valid", 10: "the certificate has expired",
            11: "the CRL is not yet valid", 12: "the CRL has expired"}
_UNTRUSTED = {2: "the issuer certificate is unknown",
              18: "the certificate is self-signed and not trusted",
              19: "a self-signed certificate in the chain is not trusted",
              20: "the issuer is not a trusted CA (unable to get local issuer certificate)",
              21: "unable to verify the first certificate",
              24: "an intermediate is not a CA", 26: "unsupported certificate purpose",
              27: "the certificate is not trusted", 28: "the certificate is rejected"}
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class TlsConfigError(Exception):
    """A CA or certificate file cannot be used (one line for the operator)."""


def verify_cause(code: int) -> tuple[str, str]:
    """``(cause, text)`` for an X.509 verification error code."""
    if code in _EXPIRED:
        return TLS_EXPIRED, _EXPIRED[code]
    if code in _UNTRUSTED:
        return TLS_UNTRUSTED, _UNTRUSTED[code]
    return TLS, f"certificate verification failed (X.509 error {code})"


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
    except SSL.Error as exc:
        raise TlsConfigError(f"CA file {path}: not a certificate ({exc})") from None


def load_client_certificate(cert_file, key_file) -> ssl.PrivateCertificate:
    """The certificate (PEM, chain allowed: the first is used) and key a client presents."""
    try:
        cert, key = open(cert_file, "rb").read(), open(key_file, "rb").read()
    except OSError as exc:
        raise TlsConfigError(f"{exc.filename}: cannot read: {exc.strerror}") from None
    try:
        return ssl.PrivateCertificate.loadPEM(key + b"\n" + cert)
    except (SSL.Error, ValueError) as exc:
        raise TlsConfigError(f"client certificate {cert_file} / key {key_file}: {exc}") \
            from None


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
        self._client = None
        if settings.client_cert_file or settings.client_key_file:
            self._client = load_client_certificate(settings.client_cert_file,
                                                   settings.client_key_file)
        self._rejected: dict = {}    # (host, port) -> X.509 error of the last bad chain

    def creatorForNetloc(self, hostname: bytes, port: int):
        host = hostname.decode("ascii")
        trust = self._by_origin.get(_origin(host, port), self._default)
        options = ssl.optionsForClientTLS(
            host, trustRoot=trust, clientCertificate=self._client,
            extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2})
        return _NotingCreator(options, self._rejected, (host.lower(), port))

    def cause_for(self, host: str, port: int):
        """``(cause, text)`` of the last certificate refused from ``host:port``, or None."""
        code = self._rejected.get((host.lower(), port))
        return None if code is None else verify_cause(code)


def _origin(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}".lower()


@implementer(IOpenSSLClientConnectionCreator)
class _NotingCreator:
    """Twisted's connection creator, with a verify callback that notes why a chain failed
    (it decides nothing: OpenSSL's own verdict ``ok`` stands)."""

    def __init__(self, inner, rejected: dict, key: tuple):
        self._inner, self._rejected, self._key = inner, rejected, key

    def clientConnectionForTLS(self, tls_protocol):
        connection = self._inner.clientConnectionForTLS(tls_protocol)
        connection.set_verify(SSL.VERIFY_PEER, self._verify)
        return connection

    def _verify(self, connection, certificate, code, depth, ok) -> bool:
        if not ok:
            self._rejected[self._key] = code
        elif depth == 0:
            self._rejected.pop(self._key, None)
        return bool(ok)
