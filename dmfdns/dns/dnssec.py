"""DNSSEC keys and wire forms: DNSKEY, DS/CDS, RRSIG and NSEC RDATA, the key tag, and the
RRSIG signature over an RRset in canonical form (RFC 4034; Ed25519: RFC 8080; ECDSA
P-256: RFC 6605). Pure: no clock, no files; the caller passes the validity window.

Names are handled as tuples of wire labels (bytes); every name that goes into signed data
is lowercased here (RFC 4034 section 6.2).
"""

import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)

ECDSAP256SHA256, ED25519 = 13, 15          # RFC 8624 section 3.1 algorithm numbers
ALGORITHMS = {"ed25519": ED25519, "ecdsap256sha256": ECDSAP256SHA256}
FLAG_ZONE, FLAG_SEP = 0x0100, 0x0001       # RFC 4034 section 2.1.1
CSK_FLAGS = FLAG_ZONE | FLAG_SEP            # 257: one key signs everything (RFC 6781 3.1)
ZSK_FLAGS = FLAG_ZONE                       # 256: a zone-signing key, no DS at the parent
CSK, KSK, ZSK = "csk", "ksk", "zsk"          # the roles a zone key plays (RFC 6781 3.1)
ROLE_FLAGS = {CSK: CSK_FLAGS, KSK: CSK_FLAGS, ZSK: ZSK_FLAGS}
DIGEST_SHA256 = 2                           # RFC 4509
IN = 1
RRSIG, NSEC, DNSKEY, DS, CDS, CDNSKEY, NXNAME = 46, 47, 48, 43, 59, 60, 128
KEY_SET_TYPES = frozenset((DNSKEY, CDS, CDNSKEY))   # the RRsets a KSK signs


def role_signs(role: str, rtype: int) -> bool:
    """Whether a key in ``role`` signs RRsets of ``rtype``: a CSK signs every RRset, a KSK
    only the apex key sets (DNSKEY, and CDS/CDNSKEY, which a parent checks against its DS:
    RFC 7344 section 4.1), a ZSK everything else (RFC 6781 section 3.1; RFC 4035 2.2)."""
    if role == CSK:
        return True
    return (rtype in KEY_SET_TYPES) == (role == KSK)


class DnssecKeyError(ValueError):
    """A key file or key object this module cannot use."""


class ZoneKey:
    """One private signing key with its role (CSK, KSK or ZSK) and DNSKEY flags."""

    def __init__(self, private_key, role: str = CSK):
        if role not in ROLE_FLAGS:
            raise DnssecKeyError(f"a zone key is a csk, ksk or zsk, not {role!r}")
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            self.algorithm = ED25519
        elif (isinstance(private_key, ec.EllipticCurvePrivateKey)
              and isinstance(private_key.curve, ec.SECP256R1)):
            self.algorithm = ECDSAP256SHA256
        else:
            raise DnssecKeyError("only Ed25519 and ECDSA P-256 keys can sign")
        self._key = private_key
        self.role = role
        self.flags = flags = ROLE_FLAGS[role]
        self.public = public_key_bytes(private_key.public_key())
        self.dnskey = dnskey_rdata(flags, self.algorithm, self.public)
        self.tag = key_tag(self.dnskey)

    @classmethod
    def generate(cls, algorithm: int = ED25519, role: str = CSK) -> "ZoneKey":
        if algorithm == ED25519:
            return cls(ed25519.Ed25519PrivateKey.generate(), role)
        if algorithm == ECDSAP256SHA256:
            return cls(ec.generate_private_key(ec.SECP256R1()), role)
        raise DnssecKeyError(f"unsupported DNSSEC algorithm {algorithm}")

    @classmethod
    def from_pem(cls, data: bytes, role: str = CSK) -> "ZoneKey":
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise DnssecKeyError(f"not a PEM private key: {error}") from None
        return cls(key, role)

    @property
    def sep(self) -> bool:
        """A key the parent's DS points to (KSK or CSK)."""
        return self.role != ZSK

    def signs(self, rtype: int) -> bool:
        return role_signs(self.role, rtype)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def sign(self, data: bytes) -> bytes:
        """The signature field of an RRSIG over ``data``: Ed25519's 64 bytes (RFC 8080
        section 4), or ECDSA's r | s as two 32-byte integers (RFC 6605 section 4)."""
        if self.algorithm == ED25519:
            return self._key.sign(data)
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def verify(self, signature: bytes, data: bytes) -> bool:
        public = self._key.public_key()
        try:
            if self.algorithm == ED25519:
                public.verify(signature, data)
            else:
                der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                           int.from_bytes(signature[32:], "big"))
                public.verify(der, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def public_key_bytes(public) -> bytes:
    """The DNSKEY public key field (RFC 8080 section 3; RFC 6605 section 4: x | y)."""
    if isinstance(public, ed25519.Ed25519PublicKey):
        return public.public_bytes(serialization.Encoding.Raw,
                                   serialization.PublicFormat.Raw)
    point = public.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)
    return point[1:]                        # drop the 0x04 uncompressed-point prefix


def dnskey_rdata(flags: int, algorithm: int, public: bytes) -> bytes:
    """RFC 4034 section 2.1: flags, protocol 3, algorithm, public key."""
    return struct.pack(">HBB", flags, 3, algorithm) + public


def key_tag(dnskey: bytes) -> int:
    """RFC 4034 Appendix B (every algorithm but RSA/MD5)."""
    total = 0
    for index, byte in enumerate(dnskey):
        total += byte if index & 1 else byte << 8
    total += (total >> 16) & 0xFFFF
    return total & 0xFFFF


def wire_name(labels) -> bytes:
    """The canonical (lowercase, uncompressed) wire form of ``labels``."""
    return b"".join(bytes((len(label),)) + label.lower() for label in labels) + b"\x00"


def ds_rdata(owner_labels, key: ZoneKey) -> bytes:
    """RFC 4034 section 5.1.4 with SHA-256 (RFC 4509): also the CDS RDATA (RFC 7344)."""
    digest = hashlib.sha256(wire_name(owner_labels) + key.dnskey).digest()
    return struct.pack(">HBB", key.tag, key.algorithm, DIGEST_SHA256) + digest


def type_bitmap(types) -> bytes:
    """The NSEC Type Bit Maps field (RFC 4034 section 4.1.2)."""
    windows = {}
    for rtype in sorted(set(types)):
        window = windows.setdefault(rtype >> 8, bytearray(32))
        window[(rtype & 0xFF) >> 3] |= 0x80 >> (rtype & 7)
    out = bytearray()
    for number, bits in sorted(windows.items()):
        used = len(bits.rstrip(b"\x00"))
        out += bytes((number, used)) + bits[:used]
    return bytes(out)


def nsec_rdata(next_labels, types) -> bytes:
    """RFC 4034 section 4.1: the next owner name (uncompressed) and the type bitmap."""
    return wire_name(next_labels) + type_bitmap(types)


def canonical_rrset(owner_labels, rtype: int, ttl: int, rdatas) -> bytes:
    """The RRs of an RRset as they enter the signature (RFC 4034 section 3.1.8.1):
    owner lowercased, the original TTL, RDATA already in canonical form, sorted by RDATA
    (section 6.3) with duplicates removed."""
    head = wire_name(owner_labels) + struct.pack(">HHI", rtype, IN, ttl)
    return b"".join(head + struct.pack(">H", len(rdata)) + rdata
                    for rdata in sorted(set(rdatas)))


def rrsig_head(rtype: int, owner_labels, ttl: int, inception: int, expiration: int,
               key: ZoneKey, signer_labels) -> bytes:
    """The RRSIG RDATA before its signature (RFC 4034 section 3.1); times are seconds
    since the epoch, taken mod 2^32 (section 3.1.5 serial arithmetic)."""
    return (struct.pack(">HBBIIIH", rtype, key.algorithm, len(owner_labels), ttl,
                        expiration % 2**32, inception % 2**32, key.tag)
            + wire_name(signer_labels))


def rrsig_rdata(head: bytes, rrset: bytes, key: ZoneKey) -> bytes:
    """The full RRSIG RDATA: ``head`` and the signature over head | canonical RRset."""
    return head + key.sign(head + rrset)
