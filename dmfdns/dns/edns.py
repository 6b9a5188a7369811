"""EDNS(0) for responses (RFC 6891): option codes, the response OPT, the UDP size limit.

The responder echoes an OPT whenever the query had a valid one, always as version 0 with
our own payload size (DNS Flag Day 2020: 1232), copies only the DO bit (RFC 3225 section 3)
and clears every other flag, and never echoes options it does not understand.
"""

import struct

from dnslib import EDNS0, EDNSOption

NSID = 3                # RFC 5001
COOKIE = 10             # RFC 7873
EDE = 15                # RFC 8914
DO = 0x8000

# RFC 8914 section 4 INFO-CODEs the responder uses.
EDE_PROHIBITED = 18
EDE_NOT_AUTHORITATIVE = 20

MIN_UDP = 512           # RFC 6891 section 6.2.5: a smaller requestor payload means 512
TCP_LIMIT = 65535       # RFC 1035 section 4.2.2: the two-byte length prefix


def size_limit(opt, max_udp: int | None) -> int:
    """Largest response we may send: 65535 over TCP (``max_udp`` None); over UDP
    min(``max_udp``, the requestor's payload clamped up to 512, or 512 without EDNS)."""
    if max_udp is None:
        return TCP_LIMIT
    if opt is None:
        return min(max_udp, MIN_UDP)
    return min(max_udp, max(opt.payload, MIN_UDP))


def response_opt(payload: int, *, do: bool, ext_rcode: int = 0, options=()) -> EDNS0:
    """Our OPT: version 0, ``payload`` bytes, DO copied, the upper rcode bits."""
    return EDNS0(udp_len=payload, ext_rcode=ext_rcode, version=0,
                 flags="do" if do else "", opts=list(options))


def option(code: int, data: bytes) -> EDNSOption:
    return EDNSOption(code, data)


def extended_error(info_code: int, text: str = "") -> EDNSOption:
    """An Extended DNS Error option (RFC 8914 section 2)."""
    return EDNSOption(EDE, struct.pack(">H", info_code) + text.encode("utf-8"))
