"""The per-client EDNS options of the fast path: COOKIE (RFC 7873), NSID (RFC 5001) and
PADDING (RFC 7830).

None of them changes the answer itself, only the options of our OPT, so a query carrying
them is answered from the answer cache and the lean path as its *bare* form (the same query
with an empty OPT RDATA): every client asking the same question shares one cached answer,
and the client's own options are added when the response is sent (``add``). BIND-family
resolvers send a cookie on every query (RFC 7873 section 5.1), so without this they would
all take the dnslib path.

``split`` takes only this exact shape and returns None for anything else, which the
dnslib path then decides: one OPT as the only additional record, right after the question,
its RDATA made only of these three options, at most one COOKIE of a well-formed length
(RFC 7873 section 5.2.2; any other length is FORMERR there), at most one empty NSID.
PADDING is dropped: over UDP and TCP in the clear it protects nothing, and RFC 8467 pads
responses only over encrypted transports.
"""

import struct

from .cookies import CLIENT_COOKIE, MAX_OPTION, MIN_OPTION
from .edns import COOKIE, NSID

PADDING = 12
_OPT_HEAD = b"\x00\x00\x29"
_OPTION_HEAD = struct.Struct(">HH")
_NO_RDATA = b"\x00\x00"
_MIN_UDP = 512


class Split:
    """A query's bare form and the options taken off it."""

    __slots__ = ("bare", "cookie", "nsid", "payload")

    def __init__(self, bare: bytes, cookie: bytes | None, nsid: bool, payload: int):
        self.bare = bare            # the query with an empty OPT RDATA
        self.cookie = cookie        # the COOKIE option data, or None
        self.nsid = nsid            # an NSID option was present
        self.payload = payload      # the requestor's UDP payload size


def split(query: bytes) -> Split | None:
    """The bare form of ``query`` and its options, or None (see the module docstring)."""
    size = len(query)
    if size < 29 or query[10] or query[11] != 1:
        return None
    # The question name ends at the first zero byte after the header. If that byte is
    # inside a label instead, the bare form's name holds a zero byte: the lean path refuses
    # it (not a canonical name) and the dnslib path gets the original query.
    end = query.find(0, 12)
    if end < 0:
        return None
    qend = end + 5
    if query[qend:qend + 3] != _OPT_HEAD:
        return None
    rdlength = (query[qend + 9] << 8) | query[qend + 10]
    if rdlength == 0 or qend + 11 + rdlength != size:
        return None
    cookie, nsid, at = None, False, qend + 11
    while at < size:
        if at + 4 > size:
            return None
        code, length = _OPTION_HEAD.unpack_from(query, at)
        stop = at + 4 + length
        if stop > size:
            return None
        if code == COOKIE:
            if cookie is not None or not (length == CLIENT_COOKIE
                                          or MIN_OPTION <= length <= MAX_OPTION):
                return None
            cookie = query[at + 4:stop]
        elif code == NSID:
            if nsid or length:
                return None
            nsid = True
        elif code != PADDING:
            return None
        at = stop
    payload = max((query[qend + 3] << 8) | query[qend + 4], _MIN_UDP)
    return Split(query[:qend + 9] + _NO_RDATA, cookie, nsid, payload)


def add(response: bytes, options: bytes) -> bytes:
    """``response`` (whose last record is our OPT, with an empty RDATA) with ``options``
    (encoded option TLVs) as that OPT's RDATA."""
    if not options:
        return response
    return response[:-2] + len(options).to_bytes(2, "big") + options


def option(code: int, data: bytes) -> bytes:
    """One encoded EDNS option (RFC 6891 section 6.1.2)."""
    return _OPTION_HEAD.pack(code, len(data)) + data
