"""Inbound TLS for the HTTP API (HTTPS) and DNS over TLS (RFC 7858), with Twisted's TLS.

``ServerTls`` turns a certificate chain file and a key file (PEM) into the OpenSSL context
every new connection of a listener uses: TLS 1.2 at least (RFC 9325 section 3.1.1), ALPN
(``http/1.1`` for HTTPS, ``dot`` for DoT, RFC 7858 section 3.2 / RFC 9525), session
resumption by session id and by ticket (RFC 8446 section 2.2: a resolver reconnecting
skips the full handshake), and, with a client CA, client certificates verified when
presented (mutual TLS between peers; a client without one is still served).

``reload()`` reads the files again and swaps the context: connections already open keep
the context they were made with, new ones get the new certificate, nothing is dropped
(what certbot's renew hook expects from SIGHUP). A reload that fails (a half-written
file, a key that does not match) keeps the old certificate and raises ``TlsConfigError``.

``tls_factory`` wraps a listener's protocol factory in ``TLSMemoryBIOFactory``; a wrapped
factory refusing a connection (returning None: the connection caps) refuses it here too.
"""

import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet import error as net_error, ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from .outbound.tls import TlsConfigError

HTTP_ALPN = (b"http/1.1",)
DOT_ALPN = (b"dot",)
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _read(path, what: str) -> bytes:
    try:
        return open(path, "rb").read()
    except OSError as exc:
        raise TlsConfigError(f"{what} {path}: cannot read: {exc.strerror}") from None


def _certificates(data: bytes, path) -> list:
    """The PEM certificates in ``data`` (cryptography objects), leaf first."""
    if not _PEM_CERT.search(data):
        raise TlsConfigError(f"certificate file {path}: no PEM certificate in it")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsConfigError(f"certificate file {path}: not a certificate ({exc})") from None


def _private_key(data: bytes, path):
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:   # TypeError: the key is encrypted
        raise TlsConfigError(f"key file {path}: not an unencrypted PEM private key "
                             f"({exc})") from None


@implementer(IOpenSSLServerConnectionCreator)
class ServerTls:
    """The TLS side of one kind of listener; ``reload()`` swaps in the files' new content."""

    def __init__(self, cert_file, key_file, *, alpn=(), client_ca_file=None):
        self.cert_file, self.key_file = cert_file, key_file
        self.alpn, self.client_ca_file = tuple(alpn), client_ca_file
        self.reloads = 0
        self.not_after = None
        self._context = self._build()

    def _build(self) -> SSL.Context:
        chain = _certificates(_read(self.cert_file, "certificate file"), self.cert_file)
        key = _private_key(_read(self.key_file, "key file"), self.key_file)
        try:
            options = ssl.CertificateOptions(
                privateKey=key, certificate=chain[0], extraCertChain=chain[1:],
                raiseMinimumTo=ssl.TLSVersion.TLSv1_2, acceptableProtocols=self.alpn or None,
                enableSessions=True, enableSessionTickets=True,
                **self._client_verification())
            context = options.getContext()
            context.check_privatekey()
        except (SSL.Error, ValueError, net_error.VerifyError) as exc:
            raise TlsConfigError(f"certificate {self.cert_file} / key {self.key_file}: "
                                 f"unusable ({exc})") from None
        self.not_after = chain[0].not_valid_after_utc
        return context

    def _client_verification(self) -> dict:
        if self.client_ca_file is None:
            return {}
        data = _read(self.client_ca_file, "client CA file")
        # pyOpenSSL's X509 store takes its own certificate type only.
        return {"verify": True, "requireCertificate": False,
                "caCerts": [crypto.X509.from_cryptography(c)
                            for c in _certificates(data, self.client_ca_file)]}

    def reload(self) -> None:
        """Read the files again; new connections get them, open ones keep theirs."""
        self._context = self._build()
        self.reloads += 1

    def serverConnectionForTLS(self, tls_protocol) -> SSL.Connection:
        return SSL.Connection(self._context, None)


class _TlsListenerFactory(TLSMemoryBIOFactory):
    noisy = False

    def buildProtocol(self, addr):
        inner = self.wrappedFactory.buildProtocol(addr)
        return None if inner is None else self.protocol(self, inner)


def tls_factory(server_tls: ServerTls, factory, clock) -> TLSMemoryBIOFactory:
    """``factory`` behind TLS; ``clock`` is the reactor (never the global one)."""
    return _TlsListenerFactory(server_tls, False, factory, clock)


def peer_certificate(transport):
    """The verified client certificate of a TLS connection (cryptography), or None."""
    get = getattr(transport, "getPeerCertificate", None)
    certificate = get() if get is not None else None
    return None if certificate is None else certificate.to_cryptography()
