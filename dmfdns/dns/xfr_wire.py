"""Wire packing for zone transfer answers (RFC 5936 section 2.2): records packed by hand,
messages filled up to a size bound.

A transfer answer can hold 100,000 names, so records are packed directly rather than
through dnslib (which costs tens of microseconds per record). Every message repeats the
question (RFC 5936 section 2.2.1 allows it) so that owner names below the zone compress
to a pointer at the question name, offset 12 (RFC 1035 section 4.1.4).
"""

import struct

from dnslib import DNSBuffer

from ..proto import txt
from . import edns

TXT_TYPE, SOA_TYPE, OPT_TYPE = 16, 6, 41
IN = 1
QUESTION_POINTER = b"\xc0\x0c"
_HEADER = struct.Struct(">HHHHHH")
_RR_FIXED = struct.Struct(">HHIH")
FLAG_QR, FLAG_AA = 0x8000, 0x0400
MESSAGE_TARGET = 16 * 1024      # bytes of records per message: BIND and Knot use 16-64 KiB
MAX_RECORD = 65535 - 512        # room left for the header, question, OPT and TSIG


def question_wire(labels, qtype: int, qclass: int) -> bytes:
    """The question as received (case kept): the name every owner points at."""
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    return name + struct.pack(">HH", qtype, qclass)


def owner_below(name: str, origin: str) -> bytes:
    """``name`` (canonical, at or below ``origin``) as its labels above the origin and a
    pointer to the question name, which is the origin."""
    if name == origin:
        return QUESTION_POINTER
    prefix = name[:len(name) - len(origin) - 1]
    return b"".join(bytes([len(label)]) + label
                    for label in (part.encode("ascii") for part in prefix.split("."))) \
        + QUESTION_POINTER


def owner_from_labels(labels) -> bytes:
    """An owner given by its labels below the zone apex (leftmost first), as those labels
    and a pointer to the question name."""
    return b"".join([bytes((len(label),)) + label for label in labels]) + QUESTION_POINTER


def txt_record(owner_wire: bytes, value: bytes, ttl: int) -> bytes:
    # One character-string (the common case) without the general splitter.
    rdata = bytes((len(value),)) + value if len(value) < 256 else txt.rdata(value)
    return owner_wire + _RR_FIXED.pack(TXT_TYPE, IN, ttl, len(rdata)) + rdata


class _Uncompressed(DNSBuffer):
    """A dnslib buffer that never compresses: its records can go anywhere in a message."""

    def encode_name(self, name):
        self.encode_name_nocompress(name)


def dnslib_record(rr) -> bytes:
    """A dnslib RR packed on its own, uncompressed, for the few static records."""
    buffer = _Uncompressed()
    rr.pack(buffer)
    return bytes(buffer.data)


def opt_record(payload: int, options=()) -> bytes:
    """An OPT pseudo-RR (RFC 6891 section 6.1.2), version 0, with ``(code, data)``
    options."""
    rdata = b"".join(struct.pack(">HH", code, len(data)) + data for code, data in options)
    return b"\x00" + _RR_FIXED.pack(OPT_TYPE, payload, 0, len(rdata)) + rdata


def ede_option(info_code: int) -> tuple[int, bytes]:
    return edns.EDE, struct.pack(">H", info_code)


def message(ident: int, flags: int, question: bytes, answers=(), additional=()) -> bytes:
    """A response with the question, ``answers`` and ``additional`` records (packed)."""
    return (_HEADER.pack(ident, flags, 1 if question else 0, len(answers), 0,
                         len(additional))
            + question + b"".join(answers) + b"".join(additional))


class MessageFiller:
    """Collects packed records and hands out full messages of about ``target`` bytes."""

    def __init__(self, ident: int, flags: int, question: bytes, target: int = MESSAGE_TARGET):
        self.ident, self.flags, self.question, self.target = ident, flags, question, target
        self._records: list[bytes] = []
        self._size = 0
        self.skipped = 0            # records too large for any message (never sent)

    def add(self, record: bytes) -> bytes | None:
        """Queue ``record``; returns a full message when it no longer fits beside the
        records queued before it. A record that cannot fit a message at all is skipped."""
        if len(record) > MAX_RECORD:
            self.skipped += 1
            return None
        full = None
        if self._records and self._size + len(record) > self.target:
            full = self.flush()
        self._records.append(record)
        self._size += len(record)
        return full

    @property
    def full(self) -> bool:
        return self._size >= self.target

    def flush(self) -> bytes | None:
        """The queued records as one message, or None when nothing is queued."""
        if not self._records:
            return None
        packed = message(self.ident, self.flags, self.question, self._records)
        self._records, self._size = [], 0
        return packed
