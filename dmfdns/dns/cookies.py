"""DNS cookies (RFC 7873) with the interoperable server cookie of RFC 9018.

A server cookie is ``version 1 | 3 reserved zero bytes | u32 timestamp | 8-byte hash`` where
hash = SipHash-2-4(key = the 16-byte cluster secret, ClientCookie | Version | Reserved |
Timestamp | Client-IP). Every node that shares the secret can verify the others' cookies,
so an anycast group or a cluster looks like one server (RFC 9018 section 1).

dmfdns does not require cookies: a query with a client cookie gets a server cookie back,
and a missing or stale server cookie never causes BADCOOKIE (RFC 7873 section 5.2.3; BADCOOKIE
is for servers that insist on cookies, which dmfdns does not). A valid server cookie tells
response-rate limiting that the client's address is not spoofed (``answer``'s flag).
"""

import socket
import struct

from siphashc import siphash as _siphash

CLIENT_COOKIE = 8
SERVER_COOKIE = 16
SECRET = 16
MIN_OPTION, MAX_OPTION = 16, 40     # RFC 7873 section 4: 8 client + 8..32 server bytes
_HEADER = b"\x01\x00\x00\x00"       # version 1, reserved
_PACK_LE = struct.Struct("<Q").pack
_STAMP = struct.Struct(">I")
PAST_LIMIT = 3600                   # RFC 9018 section 4.3: at most one hour old
FUTURE_LIMIT = 300                  # and at most five minutes in the future
RENEW_AFTER = 1800                  # RFC 9018 section 4.3: regenerate past half an hour


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
        if ":" in host:
            return socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        return socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return b""


def server_cookie(secret: bytes, client_cookie: bytes, client_ip: bytes, now: float) -> bytes:
    """A fresh RFC 9018 version-1 server cookie for ``client_cookie`` at time ``now``."""
    head = _HEADER + _STAMP.pack(int(now) & 0xFFFFFFFF)
    return head + siphash24(secret, client_cookie + head + client_ip)


def _age(server: bytes, now: float) -> int:
    """Seconds since the server cookie's timestamp, by RFC 1982 serial difference."""
    stamp = _STAMP.unpack_from(server, 4)[0]
    return (int(now) - stamp + 2**31) % 2**32 - 2**31


def verify(secret: bytes, option: bytes, client_ip: bytes, now: float) -> bool:
    """True if ``option`` (client + server cookie) carries a server cookie we made for this
    client within the RFC 9018 section 4.3 time window."""
    if len(option) != CLIENT_COOKIE + SERVER_COOKIE:
        return False
    client, server = option[:CLIENT_COOKIE], option[CLIENT_COOKIE:]
    if server[:4] != _HEADER:
        return False
    age = _age(server, now)
    if age > PAST_LIMIT or age < -FUTURE_LIMIT:
        return False
    return siphash24(secret, client + server[:8] + client_ip) == server[8:]


def answer(secret: bytes, option: bytes, client_ip: bytes, now: float) -> tuple[bytes, bool]:
    """``(cookie option data for the response, whether the query's server cookie was
    valid)``. A valid server cookie younger than half an hour is sent back as it is (RFC
    9018 section 4.3 asks for a new one only past that), which saves the second hash; any
    other gets a fresh one. An invalid or missing server cookie is never an error here
    (RFC 7873 section 5.2.3: answer normally with a new cookie)."""
    client = option[:CLIENT_COOKIE]
    valid = verify(secret, option, client_ip, now)
    if valid and _age(option[CLIENT_COOKIE:], now) <= RENEW_AFTER:
        return option, True
    return client + server_cookie(secret, client, client_ip, now), valid


def siphash24(key: bytes, message: bytes) -> bytes:
    """SipHash-2-4 (Aumasson and Bernstein, 2012) of ``message``: 8 bytes, little-endian.

    ``siphashc`` (C) does the rounds: the pure-Python rounds cost ~40 us a query, the C
    ones well under one, and every query with a cookie needs one or two."""
    return _PACK_LE(_siphash(key, message))
