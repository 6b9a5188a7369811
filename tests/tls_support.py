"""TLS test material made fresh per test session with ``dmfdns.commands.tls``: a trusted test
CA and, signed by it, a good node certificate (dmp.mesh.test, ns1.mesh.test, 127.0.0.1), a
second good one (for reloads), one for the wrong name and an expired one; plus another CA
and a certificate from it (untrusted), and a client certificate for mutual TLS."""

import datetime
import pathlib
from dataclasses import dataclass

from dmfdns.commands.tls import issue, make_ca


@dataclass(frozen=True)
class Pair:
    cert: pathlib.Path
    key: pathlib.Path


@dataclass(frozen=True)
class Material:
    ca: pathlib.Path             # the trusted test CA (PEM)
    good: Pair                   # for dmp.mesh.test, ns1.mesh.test, 127.0.0.1
    renewed: Pair                # the same names, another key and serial (a reload)
    wrong_name: Pair             # for other.example / 10.9.9.9 only
    expired: Pair                # the right names, expired a month ago
    untrusted: Pair              # the right names, from a CA nobody trusts
    other_ca: pathlib.Path
    client: Pair                 # a peer's client certificate from the trusted CA


def make_material(directory: pathlib.Path) -> Material:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca, other = make_ca(now), make_ca(now, common_name="nobody's CA")

    def save(name, pair) -> Pair:
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        cert.write_bytes(pair.cert_pem())
        key.write_bytes(pair.key_pem())
        return Pair(cert, key)
    (directory / "ca.pem").write_bytes(ca.cert_pem())
    (directory / "other-ca.pem").write_bytes(other.cert_pem())
    return Material(
        ca=directory / "ca.pem", other_ca=directory / "other-ca.pem",
        good=save("good", issue(ca, now=now)), renewed=save("renewed", issue(ca, now=now)),
        wrong_name=save("wrong", issue(ca, ["other.example"], ["10.9.9.9"], now=now)),
        expired=save("expired", issue(ca, now=now, days=30,
                                      not_before=now - datetime.timedelta(days=60))),
        untrusted=save("untrusted", issue(other, now=now)),
        client=save("client", issue(ca, ["node2.mesh.test"], [], now=now)))


def serial(cert_path: pathlib.Path) -> int:
    from cryptography import x509
    return x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
