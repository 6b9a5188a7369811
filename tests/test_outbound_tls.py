"""Outbound HTTPS through the one client against a real TLS server on loopback (ServerTls):
a trusted certificate works; an untrusted, a wrong-name and an expired one are each refused
with their own cause; an https:// URL never falls back to clear text; the system trust store
(OpenSSL's SSL_CERT_FILE) is the default; a client certificate is shown when configured."""

import pytest
import pytest_twisted
from twisted.internet import protocol
from twisted.web import resource, server

from dmfdns.outbound import errors
from dmfdns.outbound.client import HttpClient
from dmfdns.outbound.errors import OutboundError
from dmfdns.outbound.tls import TlsConfigError, TlsPolicy, TlsSettings, plain_http_outside
from dmfdns.tls_listen import HTTP_ALPN, ServerTls, peer_certificate, tls_factory

from tls_support import make_material

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    return make_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def reactor():
    from twisted.internet import reactor as global_reactor
    return global_reactor


class _WhoAmI(resource.Resource):
    """Answers with the common name of the client certificate, or ``anonymous``."""

    isLeaf = True

    def render_GET(self, request):
        certificate = peer_certificate(request.channel.transport)
        if certificate is None:
            return b"anonymous"
        return certificate.subject.rfc4514_string().encode()


@pytest.fixture
def https(reactor):
    ports = []

    def start(pair, client_ca=None) -> str:
        tls = ServerTls(pair.cert, pair.key, alpn=HTTP_ALPN, client_ca_file=client_ca)
        site = server.Site(_WhoAmI())
        ports.append(reactor.listenTCP(0, tls_factory(tls, site, reactor),
                                       interface="127.0.0.1"))
        return f"https://127.0.0.1:{ports[-1].getHost().port}/"
    yield start
    for port in ports:
        port.stopListening()


def trusting(reactor, ca, **settings) -> HttpClient:
    return HttpClient(reactor, timeout=5, tls=TlsPolicy(TlsSettings(ca_file=ca, **settings)))


async def refused_with(client, url) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        await client.request("GET", url)
    await client.close()
    return caught.value


@pytest_twisted.ensureDeferred
async def test_a_certificate_from_the_trusted_ca_is_accepted(reactor, https, material):
    client = trusting(reactor, material.ca)
    response = await client.request("GET", https(material.good))
    assert (response.status, response.body) == (200, b"anonymous")
    await client.close()


@pytest_twisted.ensureDeferred
async def test_an_untrusted_certificate_is_refused_as_untrusted(reactor, https, material):
    error = await refused_with(trusting(reactor, material.ca), https(material.untrusted))
    assert error.cause == errors.TLS_UNTRUSTED
    assert "does not end at a trusted CA" in str(error)


@pytest_twisted.ensureDeferred
async def test_a_certificate_for_another_name_is_refused_as_wrong_name(reactor, https,
                                                                       material):
    error = await refused_with(trusting(reactor, material.ca), https(material.wrong_name))
    assert error.cause == errors.TLS_WRONG_NAME
    assert "not for this host" in str(error)


@pytest_twisted.ensureDeferred
async def test_an_expired_certificate_is_refused_as_expired(reactor, https, material):
    error = await refused_with(trusting(reactor, material.ca), https(material.expired))
    assert error.cause == errors.TLS_EXPIRED and "expired" in str(error)


@pytest_twisted.ensureDeferred
async def test_a_good_certificate_after_a_bad_one_on_the_same_origin_is_accepted(
        reactor, https, material):
    """The noted cause of a refusal does not stick to the origin."""
    client = trusting(reactor, material.ca)
    assert (await refused_with(client, https(material.expired))).cause == errors.TLS_EXPIRED
    client = trusting(reactor, material.ca)
    assert (await client.request("GET", https(material.good))).status == 200
    await client.close()


class _ClearText(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest_twisted.ensureDeferred
async def test_https_to_a_clear_text_server_fails_and_never_falls_back(reactor, material):
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(_ClearText),
                             interface="127.0.0.1")
    client = trusting(reactor, material.ca)
    try:
        error = await refused_with(client, f"https://127.0.0.1:{port.getHost().port}/")
    finally:
        await port.stopListening()
    assert error.cause == errors.TLS and "TLS handshake failed" in str(error)


@pytest_twisted.ensureDeferred
async def test_the_system_trust_store_is_the_default(reactor, https, material, monkeypatch):
    url = https(material.good)
    error = await refused_with(HttpClient(reactor, timeout=5), url)
    assert error.cause == errors.TLS_UNTRUSTED          # the test CA is in no system store
    # OpenSSL's own variable replaces the system store (as for curl and requests).
    monkeypatch.setenv("SSL_CERT_FILE", str(material.ca))
    client = HttpClient(reactor, timeout=5)
    assert (await client.request("GET", url)).status == 200
    await client.close()


@pytest_twisted.ensureDeferred
async def test_a_ca_for_one_origin_applies_to_that_origin_only(reactor, https, material):
    url = https(material.good)
    origin = url.rstrip("/")
    client = HttpClient(reactor, timeout=5, tls=TlsPolicy(TlsSettings(
        ca_file=material.other_ca, origin_ca_files={origin: material.ca})))
    assert (await client.request("GET", url)).status == 200
    await client.close()


@pytest_twisted.ensureDeferred
async def test_mutual_tls_shows_the_client_certificate(reactor, https, material):
    url = https(material.good, client_ca=material.ca)
    client = trusting(reactor, material.ca, client_cert_file=material.client.cert,
                      client_key_file=material.client.key)
    assert b"CN=node2.mesh.test" in (await client.request("GET", url)).body
    await client.close()
    anonymous = trusting(reactor, material.ca)
    assert (await anonymous.request("GET", url)).body == b"anonymous"
    await anonymous.close()


@pytest_twisted.ensureDeferred
async def test_a_client_certificate_from_another_ca_is_refused(reactor, https, material):
    url = https(material.good, client_ca=material.ca)
    client = trusting(reactor, material.ca, client_cert_file=material.untrusted.cert,
                      client_key_file=material.untrusted.key)
    error = await refused_with(client, url)
    assert error.cause in errors.TLS_CAUSES or error.cause == errors.UNREACHABLE


def test_unusable_files_are_clear_errors(tmp_path, material):
    with pytest.raises(TlsConfigError, match="cannot read"):
        TlsPolicy(TlsSettings(ca_file=tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TlsConfigError, match="no PEM certificate"):
        TlsPolicy(TlsSettings(ca_file=tmp_path / "junk.pem"))
    with pytest.raises(TlsConfigError, match="unusable"):
        ServerTls(material.good.cert, material.renewed.key)      # key of another cert


@pytest.mark.parametrize("url, outside", [
    ("http://8.8.8.8:8053", True), ("http://[2001:4860::8888]", True),
    ("http://node2.example.net", True), ("http://203.0.113.7:8053", False),
    ("http://127.0.0.1:8053", False), ("http://[::1]:8053", False),
    ("http://10.1.2.3:8053", False), ("http://192.168.0.2", False),
    ("http://localhost:8053", False), ("https://8.8.8.8", False),
    ("http://node2:8053", False), ("http://n2.peers.invalid", False),
    ("http://n1.mesh.test:8401", False), ("http://dmp.example.org", True)])
def test_plain_http_outside_private_ranges(url, outside):
    assert plain_http_outside(url) is outside
