"""Node heartbeat, ``v=dmp1;t=heartbeat;`` (docs/wire-format.md §4.9).

A node announces "I am reachable at <endpoint>, run <version>, can do <capabilities>" at
``_dnsmesh-heartbeat.<zone>``, signed by its operator key, and republishes the verified
heartbeats of peers at ``_dnsmesh-seen.<zone>``. Other operators' crawlers connect to the
endpoint, so it must name a public host: the endpoint rules below refuse anything that
points a crawler back at itself or into a private network.

Body (``DMPHB03``): ``magic | endpoint_len u16 | endpoint | operator_spk 32 | version_len u8 |
version | capabilities u16 | zone_len u8 | claim_provider_zone | ts u64 | exp u64``, then one
64-byte signature by ``operator_spk``. Legacy ``DMPHB02`` bodies have no zone fields.
"""

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import b64, names, prefixes
from .binreader import Reader
from .signing import PUBLIC_KEY_LEN, Signer, decode_self_signed

CAP_CLAIM_PROVIDER = 1 << 0  # the node hosts claim records under its zone; other bits reserved
MAX_ENDPOINT = 255
MAX_VERSION = 32
MAX_ZONE = 64
MAX_CAPABILITIES = 0xFFFF
I63_LIMIT = 1 << 63  # the reference keeps ts and exp within a signed 64-bit integer
MAX_SKEW = 300  # |ts - now| allowed, against replay of captured heartbeats
MAX_LIFETIME = 30 * 86400

SCHEMES = ("http", "https")
# Names every resolver maps to the local host (RFC 6761 section 6.3 reserves .localhost).
LOCALHOST_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")

_MAGIC = prefixes.MAGIC_HEARTBEAT
_LEGACY_MAGIC = prefixes.MAGIC_HEARTBEAT_LEGACY
# A last label like "1", "0x7f" or "0177" turns a "host name" into an IPv4 address for
# inet_aton-style resolvers ("127.1", "2130706433"); no real top-level domain looks like that.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Heartbeat:
    endpoint: str
    operator_spk: bytes
    version: str
    capabilities: int
    claim_provider_zone: str  # empty when the node hosts no claims, and in DMPHB02 bodies
    ts: int
    exp: int

    @property
    def is_claim_provider(self) -> bool:
        return bool(self.capabilities & CAP_CLAIM_PROVIDER)


# -- field rules -------------------------------------------------------------------------------

def _printable_ascii(text: str) -> bool:
    """ASCII without whitespace or control characters."""
    return all(0x21 <= ord(c) < 0x7F for c in text)


def endpoint_problem(url) -> str | None:
    """Why ``url`` is not an acceptable heartbeat endpoint, or None if it is.

    An endpoint is ``http(s)://host[:port]``: no user info (``https://a@b`` connects to b),
    no path, query or fragment (clients append ``/v1/...``), and a host that is a public IP
    literal or a real host name, never the local host.
    """
    if not isinstance(url, str) or not url:
        return "endpoint must be a non-empty string"
    if len(url) > MAX_ENDPOINT:
        return f"endpoint longer than {MAX_ENDPOINT} characters"
    if not _printable_ascii(url):
        return "endpoint must be ASCII without whitespace or control characters"
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return "endpoint is not a valid URL"
    if parts.scheme not in SCHEMES:
        return "endpoint scheme must be http or https"
    if parts.username is not None or parts.password is not None:
        return "endpoint must not carry user info"
    # An empty "?" or "#" leaves query and fragment empty but still breaks appended paths.
    if parts.path or "?" in url or "#" in url:
        return "endpoint must be scheme://host[:port] without path, query or fragment"
    if not port_ok:
        return "endpoint port must be 1..65535"
    return _host_problem(parts.hostname or "", bracketed="[" in parts.netloc)


def _host_problem(host: str, bracketed: bool) -> str | None:
    if not host:
        return "endpoint must name a host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return _address_problem(address)
    if bracketed:
        return "a bracketed endpoint host must be an IPv6 address"
    name = names.ldh_name(host)
    if name is None:
        return "endpoint host is not a host name"
    name = name.lower()
    if name in LOCALHOST_NAMES or name.endswith(".localhost"):
        return "endpoint host is the local host"
    if _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
        return "endpoint host is a numeric address in disguise"
    return None


def _address_problem(address) -> str | None:
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"endpoint address is {kind.replace('_', '-')}"
    return None


def _field_problem(endpoint, version, capabilities, zone, ts, exp) -> str | None:
    """The sign-side rules, which the parser applies too."""
    problem = endpoint_problem(endpoint)
    if problem:
        return problem
    if not isinstance(version, str) or len(version) > MAX_VERSION or not version.isascii():
        return f"version must be ASCII, at most {MAX_VERSION} characters"
    if not isinstance(capabilities, int) or not 0 <= capabilities <= MAX_CAPABILITIES:
        return "capabilities must be 0..65535"
    if not isinstance(zone, str) or len(zone) > MAX_ZONE or not _printable_ascii(zone):
        return (f"claim provider zone must be ASCII without whitespace, "
                f"at most {MAX_ZONE} characters")
    for name, value in (("ts", ts), ("exp", exp)):
        if not isinstance(value, int) or not 0 <= value < I63_LIMIT:
            return f"{name} must be 0..2^63-1"
    if exp <= ts:
        return "exp must be after ts"
    return None


# -- signing and parsing -----------------------------------------------------------------------

def sign(endpoint: str, operator_spk: bytes, version: str, capabilities: int,
         claim_provider_zone: str, ts: int, exp: int, signer: Signer) -> str:
    """The DMPHB03 heartbeat TXT string, signed by the operator key ``operator_spk``."""
    if bytes(operator_spk) != signer.public_key:
        raise ValueError("operator_spk is not the signer's public key")
    problem = _field_problem(endpoint, version, capabilities, claim_provider_zone, ts, exp)
    if problem:
        raise ValueError(problem)
    body = (_MAGIC + len(endpoint).to_bytes(2, "big") + endpoint.encode("ascii")
            + signer.public_key + bytes([len(version)]) + version.encode("ascii")
            + capabilities.to_bytes(2, "big") + bytes([len(claim_provider_zone)])
            + claim_provider_zone.encode("ascii") + ts.to_bytes(8, "big")
            + exp.to_bytes(8, "big"))
    return prefixes.HEARTBEAT + b64.encode(body + signer.sign(body))


def decode(wire) -> Heartbeat | None:
    """The heartbeat in ``wire`` (DMPHB03 or DMPHB02) if well formed and self-signed.

    No time rules.
    """
    return decode_self_signed(wire, prefixes.HEARTBEAT, prefixes.MAX_SIGNED_WIRE, _parse_body,
                              lambda record: (record.operator_spk,))


def _parse_body(body: bytes) -> Heartbeat | None:
    reader = Reader(body)
    magic = reader.take(len(_MAGIC))
    if magic not in (_MAGIC, _LEGACY_MAGIC):
        return None
    endpoint = reader.prefixed_text(2, "ascii")
    operator_spk = reader.take(PUBLIC_KEY_LEN)
    version = reader.prefixed_text(1, "ascii")
    capabilities = reader.u16()
    zone = reader.prefixed_text(1, "ascii") if magic == _MAGIC else ""
    ts, exp = reader.u64(), reader.u64()
    if not reader.done:
        return None
    record = Heartbeat(endpoint, operator_spk, version, capabilities, zone, ts, exp)
    if _field_problem(record.endpoint, record.version, record.capabilities,
                      record.claim_provider_zone, record.ts, record.exp):
        return None
    return record


def time_problem(record: Heartbeat, now: int) -> str | None:
    """The first time rule of section 1.5 that ``record`` breaks at ``now``, else None."""
    if abs(record.ts - now) > MAX_SKEW:
        return "timestamp more than 5 minutes from now"
    if record.exp <= now:
        return "expired"
    if record.exp - now > MAX_LIFETIME:
        return "expiry more than 30 days ahead"
    if record.exp <= record.ts:
        return "expiry not after timestamp"
    return None


def parse_and_verify(wire, *, now: int) -> Heartbeat | None:
    """``decode`` plus the time rules; never raises."""
    record = decode(wire)
    if record is None or time_problem(record, now):
        return None
    return record
