"""NOTIFY messages (RFC 1996): the one a primary sends and the check of the answer.

A NOTIFY is opcode 4 with AA set, the zone apex in the question (type SOA) and, as RFC 1996
section 3.7 allows, the current SOA in the answer section, optionally signed with TSIG.
The secondary acknowledges with a response carrying the same id, opcode and question; a
signed NOTIFY must get a signed acknowledgement (RFC 8945 section 5.3).
"""

import struct

from . import tsig, xfr, xfr_wire

NOTIFY_OPCODE = 4
SOA_TYPE, IN = 6, 1


def message(ident: int, zone, serial: int, key: tsig.TsigKey | None, *,
            now: float) -> tuple[bytes, bytes | None]:
    """The NOTIFY for ``zone`` at ``serial`` and its TSIG MAC (None when unsigned)."""
    labels = [label.encode("ascii") for label in zone.origin.split(".")]
    question = xfr_wire.question_wire(labels, SOA_TYPE, IN)
    flags = (NOTIFY_OPCODE << 11) | xfr_wire.FLAG_AA
    packed = xfr_wire.message(ident, flags, question, [xfr.soa_record(zone, serial)])
    if key is None:
        return packed, None
    return tsig.sign(packed, key, now=now)


def acknowledgement(response: bytes, ident: int, origin: str, key: tsig.TsigKey | None,
                    request_mac: bytes | None, *, now: float) -> str | None:
    """How a datagram answers the NOTIFY ``ident``: None when it is not an answer to it
    (ignored), "ok", or why it is a failure ("rcode N", "tsig ...")."""
    if len(response) < 12:
        return None
    got_id, flags = struct.unpack_from(">HH", response)
    if got_id != ident or not flags & 0x8000 or (flags >> 11) & 0xF != NOTIFY_OPCODE:
        return None
    if _question_origin(response) != origin:
        return None
    if key is not None:
        verdict = tsig.verify(response, lambda name: key if name == key.name else None,
                              now=now, request_mac=request_mac)
        if verdict.status != "ok":
            return f"tsig {verdict.status} error {verdict.error}: {verdict.reason}"
    rcode = flags & 0xF
    return "ok" if rcode == 0 else f"rcode {rcode}"


def _question_origin(response: bytes) -> str | None:
    if struct.unpack_from(">H", response, 4)[0] != 1:
        return None
    labels, offset = [], 12
    while offset < len(response):
        length = response[offset]
        if length == 0:
            return b".".join(labels).decode("ascii", "replace").lower()
        if length > 63:
            return None
        labels.append(response[offset + 1:offset + 1 + length])
        offset += 1 + length
    return None
