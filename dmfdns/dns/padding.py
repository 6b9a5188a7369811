"""EDNS(0) Padding of responses over DNS over TLS (RFC 7830, RFC 8467).

Encryption hides a message's bytes, not its length; the length of a TXT answer can tell
which record was asked for. RFC 8467 section 4.1 (Block-Length Padding): a responder pads
each response to a multiple of 468 octets, and only when the query itself was padded
(RFC 7830 section 4: a client that does not pad gets no padding). Over UDP and TCP in the
clear padding protects nothing, so only the DoT listener calls ``pad_response``.

The response comes from the responder (its own well-formed output): the Padding option is
added to its OPT record's RDATA in place. A response without an OPT, with a TSIG record
(the signature covers the OPT as sent), or that padding would push past 65,535 bytes is
sent as it is.
"""

import struct

from . import query as query_parser

PADDING = 12                      # the EDNS option code (RFC 7830 section 3)
BLOCK = 468                       # RFC 8467 section 4.1
MAX_MESSAGE = 65535               # RFC 1035 section 4.2.2 two-byte framing
_OPT, _TSIG = 41, 250
_HEADER = struct.Struct(">HHHHHH")
_RR_FIXED = struct.Struct(">HHIH")


def wants_padding(query: bytes) -> bool:
    """True when ``query`` carries an EDNS Padding option (any length)."""
    parsed = query_parser.parse(query)
    return (parsed is not None and parsed.opt is not None
            and parsed.opt.option(PADDING) is not None)


def pad_response(query: bytes, response: bytes, block: int = BLOCK) -> bytes:
    """``response`` padded to a multiple of ``block`` when ``query`` asked for padding."""
    if not wants_padding(query):
        return response
    found = _opt_record(response)
    if found is None:
        return response
    rdlength_at, rdata_end = found
    missing = (-(len(response) + 4)) % block        # 4: the option's code and length
    if len(response) + 4 + missing > MAX_MESSAGE:
        return response
    rdlength = struct.unpack_from(">H", response, rdlength_at)[0] + 4 + missing
    option = struct.pack(">HH", PADDING, missing) + bytes(missing)
    return (response[:rdlength_at] + struct.pack(">H", rdlength)
            + response[rdlength_at + 2:rdata_end] + option + response[rdata_end:])


def _opt_record(message: bytes):
    """``(offset of the OPT's RDLENGTH, end of its RDATA)``, or None when the message has
    no OPT, has a TSIG, or does not parse."""
    try:
        _, _, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(message, 0)
        at = _HEADER.size
        for _ in range(qdcount):
            at = _skip_name(message, at) + 4
        found = None
        for index in range(ancount + nscount + arcount):
            name_end = _skip_name(message, at)
            rtype, _, _, rdlength = _RR_FIXED.unpack_from(message, name_end)
            end = name_end + _RR_FIXED.size + rdlength
            if index >= ancount + nscount:
                if rtype == _TSIG:
                    return None
                if rtype == _OPT:
                    found = (name_end + 8, end)
            at = end
    except (struct.error, IndexError):
        return None
    return found if at == len(message) else None


def _skip_name(message: bytes, at: int) -> int:
    while True:
        length = message[at]
        if length == 0:
            return at + 1
        if length & 0xC0 == 0xC0:
            return at + 2
        at += 1 + length
