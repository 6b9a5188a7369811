"""DNS UPDATE from the client (RFC 2136): unsigned claims and TSIG-signed TXT writes.

``build`` makes an UPDATE for one zone: adds (class IN), deletes of one value (class NONE)
or of a whole RRset (class ANY), every TXT value split into 255-byte character-strings (the
reference's 0.7.5 writer puts a value in one string and so cannot send a value over 255
bytes). ``UpdateSender`` sends it through the client's ``DnsClient`` (UDP, TCP when
truncated), signing with a TSIG key when given (RFC 8945, ``dmfdns.dns.tsig``) and checking
the signature of the answer. ``TsigWriter`` is the record writer of a user who registered
a TSIG key: every publish and delete is one signed UPDATE to the home node, which
replicates it to the rest of its cluster.
"""

import secrets
import struct

from twisted.internet import defer

from ..dns import tsig
from ..proto import txt as txt_strings
from .dnsquery import QueryFailed, Server
from .writer import WriteError

UPDATE_OPCODE = 5
IN, NONE, ANY = 1, 254, 255
SOA, TXT = 6, 16
NOERROR = 0
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
          5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH",
          10: "NOTZONE"}
ADD, DELETE_VALUE, DELETE_RRSET = "add", "delete_value", "delete_rrset"


class UpdateFailed(Exception):
    """The node answered with ``rcode`` (or its answer could not be trusted)."""

    def __init__(self, message: str, rcode: int | None = None):
        super().__init__(message)
        self.rcode = rcode


def _name(name: str) -> bytes:
    labels = [label for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(l)]) + l.encode("ascii") for l in labels) + b"\x00"


def build(zone: str, ops, message_id: int) -> bytes:
    """An UPDATE of ``zone`` with ``ops``: ``(ADD, name, value, ttl)``,
    ``(DELETE_VALUE, name, value)`` or ``(DELETE_RRSET, name)``."""
    records = []
    for op in ops:
        kind, name = op[0], op[1]
        if kind == ADD:
            rclass, ttl, rdata = IN, int(op[3]), txt_strings.rdata(op[2].encode("utf-8"))
        elif kind == DELETE_VALUE:
            rclass, ttl, rdata = NONE, 0, txt_strings.rdata(op[2].encode("utf-8"))
        else:
            rclass, ttl, rdata = ANY, 0, b""
        records.append(_name(name) + struct.pack(">HHIH", TXT, rclass, ttl, len(rdata))
                       + rdata)
    header = struct.pack(">HHHHHH", message_id, UPDATE_OPCODE << 11, 1, 0, len(records), 0)
    return header + _name(zone) + struct.pack(">HH", SOA, IN) + b"".join(records)


class UpdateSender:
    """Sends UPDATEs through ``dns_client`` (a ``DnsClient``); ``clock`` signs them."""

    def __init__(self, dns_client, clock):
        self.dns = dns_client
        self.clock = clock

    @defer.inlineCallbacks
    def send(self, server: Server, zone: str, ops, key: tsig.TsigKey | None = None):
        """Deferred rcode of the answer; fails with UpdateFailed when there is none or
        a signed answer does not verify."""
        message_id = secrets.randbelow(65536)
        wire, mac = build(zone, ops, message_id), None
        if key is not None:
            wire, mac = tsig.sign(wire, key, now=self.clock.seconds())
        try:
            answer = yield self.dns.exchange(server, wire,
                                             lambda data: _response(data, message_id))
        except QueryFailed as exc:
            raise UpdateFailed(str(exc)) from None
        if key is not None:
            verdict = tsig.verify(answer, lambda name: key if name == key.name else None,
                                  now=self.clock.seconds(), request_mac=mac)
            if verdict.status != "ok":
                error = verdict.error or verdict.rcode
                raise UpdateFailed(f"{server}: TSIG of the answer: error {error} "
                                   f"({verdict.reason})", answer[3] & 0xF)
        return answer[3] & 0xF


def _response(data: bytes, message_id: int):
    """``(truncated, data)`` for an answer to our UPDATE ``message_id``, else None."""
    if len(data) < 12:
        return None
    ident, flags = struct.unpack_from(">HH", data)
    if ident != message_id or not flags & 0x8000 or (flags >> 11) & 0xF != UPDATE_OPCODE:
        return None
    return bool(flags & 0x0200), bytes(data)


class TsigWriter:
    """The record writer of a TSIG user: signed UPDATEs of ``zone`` to ``server``."""

    def __init__(self, sender: UpdateSender, server: Server, zone: str, key: tsig.TsigKey):
        self.sender, self.server, self.zone, self.key = sender, server, zone, key

    def publish(self, name: str, value: str, ttl: int):
        return self._write([(ADD, name, value, ttl)], name)

    def delete(self, name: str, value: str):
        return self._write([(DELETE_VALUE, name, value)], name)

    @defer.inlineCallbacks
    def _write(self, ops, name: str):
        try:
            rcode = yield self.sender.send(self.server, self.zone, ops, self.key)
        except UpdateFailed as exc:
            raise WriteError(f"UPDATE of {name}: {exc}") from None
        if rcode != NOERROR:
            raise WriteError(f"UPDATE of {name}: {self.server} answered "
                             f"{RCODES.get(rcode, rcode)}")
        return True

    def drain(self):
        return defer.succeed(None)

    def close(self):
        return defer.succeed(None)
