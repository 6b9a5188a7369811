"""``dmfdns tls test-material DIR``: a private test CA and a server certificate signed by it.

For tests, demos and private clusters on loopback only: the CA key is written next to the
certificates and nothing protects it. ``node/public/tls`` holds one set made by this command
(``tools/regen-public-tls`` remakes it). A public node uses a certificate from a real CA
(certbot, a company CA), never these.

``make_ca`` and ``issue`` are also what the TLS tests use to make untrusted, wrong-name and
expired certificates (cryptography's X.509 builder, RFC 5280 profiles).
"""

import datetime
import ipaddress
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("dmp.mesh.test", "ns1.mesh.test")
DEFAULT_IPS = ("127.0.0.1",)
TEST_MARK = "dmfdns TEST MATERIAL - not for production"
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class KeyPair:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_MARK),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _builder(subject: str, issuer: x509.Name, public_key, not_before, not_after):
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after))


def make_ca(now: datetime.datetime, *, common_name: str = "dmfdns test CA",
            days: int = 3650) -> KeyPair:
    """A self-signed CA certificate (RFC 5280 section 4.2.1.9: CA, path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    cert = (_builder(common_name, subject, key.public_key(), now - DAY, now + days * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return KeyPair(cert, key)


def issue(ca: KeyPair, names=DEFAULT_NAMES, ips=DEFAULT_IPS, *, now: datetime.datetime,
          days: int = 825, not_before: datetime.datetime | None = None,
          client: bool = True) -> KeyPair:
    """A leaf certificate for ``names`` and ``ips`` (subjectAltName), signed by ``ca``,
    valid from ``not_before`` (default: a day ago) for ``days``; usable by a server and,
    with ``client``, as a client certificate (mutual TLS between peers)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or now - DAY
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a))
                                              for a in ips]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH]
                                                  if client else [])
    common = (list(names) + list(ips))[0]
    cert = (_builder(common, ca.certificate.subject, key.public_key(), start,
                     start + days * DAY)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return KeyPair(cert, key)


def write_set(directory, ca: KeyPair, leaf: KeyPair, *, prefix: str = "node") -> dict:
    """``ca.pem``, ``ca.key``, ``<prefix>.pem`` and ``<prefix>.key`` in ``directory``."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"ca.pem": ca.cert_pem(), "ca.key": ca.key_pem(),
             f"{prefix}.pem": leaf.cert_pem(), f"{prefix}.key": leaf.key_pem()}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return {name: directory / name for name in files}


def register(sub) -> None:
    tls = sub.add_parser("tls", help="TLS test material")
    actions = tls.add_subparsers(dest="tls_command", metavar="ACTION")
    actions.required = True
    make = actions.add_parser(
        "test-material", help="write a test CA and a node certificate signed by it "
                              "(ca.pem, ca.key, node.pem, node.key) - tests only")
    make.add_argument("directory", help="where to write the files")
    make.add_argument("--name", action="append", metavar="DNS_NAME",
                      help=f"a DNS name of the node (repeatable; default: "
                           f"{', '.join(DEFAULT_NAMES)})")
    make.add_argument("--ip", action="append", metavar="ADDRESS",
                      help=f"an IP address of the node (repeatable; default: "
                           f"{', '.join(DEFAULT_IPS)})")
    make.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    make.set_defaults(handler=write_test_material)


def write_test_material(args, ctx) -> int:
    from . import CommandError
    now = datetime.datetime.fromtimestamp(ctx.now, datetime.timezone.utc)
    try:
        ips = [str(ipaddress.ip_address(a)) for a in (args.ip or DEFAULT_IPS)]
    except ValueError as exc:
        raise CommandError(f"--ip: {exc}") from None
    if args.days < 1:
        raise CommandError("--days must be at least 1")
    ca = make_ca(now, days=args.days)
    leaf = issue(ca, args.name or DEFAULT_NAMES, ips, now=now, days=args.days)
    try:
        files = write_set(args.directory, ca, leaf)
    except OSError as exc:
        raise CommandError(f"{args.directory}: cannot write: {exc.strerror}") from None
    for path in files.values():
        print(f"wrote {path}", file=ctx.stdout)
    print(f"({TEST_MARK})", file=ctx.stdout)
    return 0
