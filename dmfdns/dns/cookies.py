"""DNS cookies (RFC 7873) with the interoperable server cookie of RFC 9018.

A server cookie is ``version 1 | 3 reserved zero bytes | u32 timestamp | 8-byte hash`` where
hash = SipHash-2-4(key = the 16-byte cluster secret, ClientCookie | Version | Reserved |
Timestamp | Client-IP). Every node that shares the secret can verify the others' cookies,
so an anycast group or a cluster looks like one server (RFC 9018 section 1).

dmfdns does not require cookies: a query with a client cookie gets a fresh server cookie
back, and a missing or stale server cookie never causes BADCOOKIE. ``verify`` exists for
rate limiting (a client with a valid cookie is not spoofed).
"""

import ipaddress
import struct

CLIENT_COOKIE = 8
SERVER_COOKIE = 16
SECRET = 16
MIN_OPTION, MAX_OPTION = 16, 40     # RFC 7873 section 4: 8 client + 8..32 server bytes
_HEADER = b"\x01\x00\x00\x00"       # version 1, reserved
_MASK = 0xFFFFFFFFFFFFFFFF
PAST_LIMIT = 3600                   # RFC 9018 section 4.3: at most one hour old
FUTURE_LIMIT = 300                  # and at most five minutes in the future


def well_formed(data: bytes) -> bool:
    """RFC 7873 section 5.2.2: only a lone 8-byte client cookie or 16..40 bytes in total is
    acceptable; any other length is FORMERR."""
    return len(data) == CLIENT_COOKIE or MIN_OPTION <= len(data) <= MAX_OPTION


def client_address(client) -> bytes:
    """The packed IP of ``client`` (an address string or a ``(host, port, ...)`` tuple);
    empty when unknown, so a cookie is still produced."""
    host = client[0] if isinstance(client, tuple) and client else client
    if not isinstance(host, str):
        return b""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).packed
    except ValueError:
        return b""


def server_cookie(secret: bytes, client_cookie: bytes, client_ip: bytes, now: float) -> bytes:
    """A fresh RFC 9018 version-1 server cookie for ``client_cookie`` at time ``now``."""
    head = _HEADER + struct.pack(">I", int(now) & 0xFFFFFFFF)
    return head + siphash24(secret, client_cookie + head + client_ip)


def verify(secret: bytes, option: bytes, client_ip: bytes, now: float) -> bool:
    """True if ``option`` (client + server cookie) carries a server cookie we made for this
    client within the RFC 9018 section 4.3 time window."""
    if len(option) != CLIENT_COOKIE + SERVER_COOKIE:
        return False
    client, server = option[:CLIENT_COOKIE], option[CLIENT_COOKIE:]
    if server[:4] != _HEADER:
        return False
    stamp = struct.unpack(">I", server[4:8])[0]
    age = (int(now) - stamp + 2**31) % 2**32 - 2**31     # RFC 1982 serial difference
    if age > PAST_LIMIT or age < -FUTURE_LIMIT:
        return False
    return siphash24(secret, client + server[:8] + client_ip) == server[8:]


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _rounds(v0, v1, v2, v3, n):
    for _ in range(n):
        v0 = (v0 + v1) & _MASK
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _MASK
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _MASK
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _MASK
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash24(key: bytes, message: bytes) -> bytes:
    """SipHash-2-4 (Aumasson and Bernstein, 2012) of ``message``: 8 bytes, little-endian."""
    k0, k1 = struct.unpack("<QQ", key)
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573
    tail = len(message) % 8
    body = len(message) - tail
    for (m,) in struct.iter_unpack("<Q", message[:body]):
        v3 ^= m
        v0, v1, v2, v3 = _rounds(v0, v1, v2, v3, 2)
        v0 ^= m
    last = int.from_bytes(message[body:], "little") | ((len(message) & 0xFF) << 56)
    v3 ^= last
    v0, v1, v2, v3 = _rounds(v0, v1, v2, v3, 2)
    v0 ^= last
    v2 ^= 0xFF
    v0, v1, v2, v3 = _rounds(v0, v1, v2, v3, 4)
    return struct.pack("<Q", v0 ^ v1 ^ v2 ^ v3)
