"""TSIG (RFC 8945): verify signed requests, sign responses and transfer streams.

Pure: bytes in, bytes out, ``now`` passed in (seconds since the epoch). One module serves
every signed exchange of the server: zone transfers and NOTIFY (RFC 5936, RFC 1996) and
DNS UPDATE (RFC 2136).

A caller verifies a request with ``verify(message, lookup, now=...)``. ``lookup`` maps a
canonical key name to a ``TsigKey`` (or None); whatever the caller attaches to the key
(``TsigKey.attached``: scopes, zones) comes back on the verdict. The ``Verdict`` says what
to do: ``unsigned`` (no TSIG), ``ok``, ``formerr`` (answer FORMERR without TSIG, section
5.2), or ``notauth`` with a TSIG error (BADKEY, BADSIG, BADTIME, BADTRUNC). The caller
builds its response as usual and passes it through ``finish(response, verdict, now=...)``,
which signs it (section 5.3), turns it into the section 5.3.2 error response carrying the
TSIG RR, or leaves it alone. A multi-message answer (AXFR, IXFR) goes through a
``StreamSigner``, which chains each MAC into the next (section 5.3.1); every message is
signed.
"""

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives import constant_time, hashes, hmac

TSIG_TYPE = 250
ANY_CLASS = 255
NOERROR, FORMERR, NOTAUTH = 0, 1, 9
BADSIG, BADKEY, BADTIME, BADTRUNC = 16, 17, 18, 22          # RFC 8945 section 3
DEFAULT_FUDGE = 300                                          # RFC 8945 section 10
_HEADER = struct.Struct(">HHHHHH")
_RR_FIXED = struct.Struct(">HHIH")
_MAX_POINTERS = 64

# Algorithm name -> (hash, MAC length in bytes); RFC 8945 section 6 and RFC 4635.
ALGORITHMS = {
    "hmac-md5.sig-alg.reg.int": (hashes.MD5, 16),
    "hmac-sha1": (hashes.SHA1, 20),
    "hmac-sha224": (hashes.SHA224, 28),
    "hmac-sha256": (hashes.SHA256, 32),
    "hmac-sha256-128": (hashes.SHA256, 16),
    "hmac-sha384": (hashes.SHA384, 48),
    "hmac-sha384-192": (hashes.SHA384, 24),
    "hmac-sha512": (hashes.SHA512, 64),
    "hmac-sha512-256": (hashes.SHA512, 32),
}
_ALIASES = {"hmac-md5": "hmac-md5.sig-alg.reg.int"}
_KEY_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


@dataclass(frozen=True)
class TsigKey:
    """A shared secret: canonical key name and algorithm, and what the caller attaches."""

    name: str                       # lowercase, no trailing dot
    algorithm: str                  # a key of ALGORITHMS
    secret: bytes
    attached: Any = None            # the caller's (scopes, zones, ...); never used here

    def __post_init__(self):
        if algorithm_name(self.algorithm) != self.algorithm:
            raise ValueError(f"unknown TSIG algorithm {self.algorithm!r}")
        if not key_name_valid(self.name):
            raise ValueError(f"invalid TSIG key name {self.name!r}")
        if not self.secret:
            raise ValueError("empty TSIG secret")

    def __repr__(self):             # never print the secret
        return f"TsigKey({self.name!r}, {self.algorithm!r})"


@dataclass(frozen=True)
class TsigRecord:
    """The TSIG RR of a message (RFC 8945 section 4.2) and where it starts."""

    key_name: str
    key_wire: bytes                 # the owner name, lowercase, uncompressed
    algorithm: str
    algorithm_wire: bytes
    time_signed: int
    fudge: int
    mac: bytes
    original_id: int
    error: int
    other: bytes
    start: int                      # offset of the RR in the message


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` decided; ``status`` is unsigned, ok, formerr or notauth."""

    status: str
    error: int = NOERROR            # the TSIG error for notauth
    key: TsigKey | None = None
    record: TsigRecord | None = None
    unsigned: bytes = b""           # the message without its TSIG RR (ARCOUNT lowered)
    reason: str = ""

    @property
    def rcode(self) -> int:
        return {"formerr": FORMERR, "notauth": NOTAUTH}.get(self.status, NOERROR)

    @property
    def request_mac(self) -> bytes:
        return self.record.mac if self.record is not None else b""


def algorithm_name(text: str) -> str | None:
    """The canonical algorithm name for ``text`` (case, trailing dot, hmac-md5), or None."""
    name = text.lower().rstrip(".")
    name = _ALIASES.get(name, name)
    return name if name in ALGORITHMS else None


def key_name_valid(name: str) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= 253
            and all(_KEY_LABEL.fullmatch(label) for label in name.split(".")))


def parse_key_line(line: str, attached: Any = None) -> TsigKey:
    """A key from ``algorithm:name:base64-secret`` (one line); ValueError says what is wrong."""
    parts = line.strip().split(":")
    if len(parts) != 3:
        raise ValueError("a TSIG key is one line 'hmac-sha256:<key name>:<base64 secret>'")
    algorithm = algorithm_name(parts[0])
    if algorithm is None:
        raise ValueError(f"unknown TSIG algorithm {parts[0]!r} "
                         f"(one of {', '.join(sorted(ALGORITHMS))}, hmac-md5)")
    name = parts[1].lower().rstrip(".")
    if not key_name_valid(name):
        raise ValueError(f"invalid TSIG key name {parts[1]!r}")
    try:
        secret = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the TSIG secret is not valid base64") from None
    if len(secret) < 16:
        raise ValueError("the TSIG secret is shorter than 16 bytes")
    return TsigKey(name, algorithm, secret, attached)


# Reading the TSIG RR off a message.

class _Bad(Exception):
    pass


def _read_name(data: bytes, offset: int) -> tuple[tuple, int]:
    """Labels (lowercased) of a possibly compressed name, and the offset after it."""
    labels, end, jumps, total = [], None, 0, 0
    while True:
        if offset >= len(data):
            raise _Bad("truncated name")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data) or jumps >= _MAX_POINTERS:
                raise _Bad("bad compression pointer")
            end = offset + 2 if end is None else end
            offset, jumps = ((length & 0x3F) << 8) | data[offset + 1], jumps + 1
            continue
        if length > 63:
            raise _Bad("extended label type")
        if length == 0:
            return tuple(labels), (offset + 1 if end is None else end)
        label = data[offset + 1:offset + 1 + length]
        if len(label) != length:
            raise _Bad("truncated name")
        total += 1 + length
        if total > 254:
            raise _Bad("name longer than 255 octets")
        labels.append(label.lower())
        offset += 1 + length


def _name_text(labels: tuple) -> str:
    return ".".join(label.decode("ascii", "backslashreplace").replace(".", "\\.")
                    for label in labels)


def _name_wire(labels) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def _text_wire(name: str) -> bytes:
    return _name_wire([label.encode("ascii") for label in name.split(".")])


def _skip_rr(data: bytes, offset: int) -> tuple[int, int]:
    """The offset after the RR at ``offset`` and its type."""
    offset = _read_name(data, offset)[1]
    if offset + _RR_FIXED.size > len(data):
        raise _Bad("truncated record")
    rtype, _, _, rdlength = _RR_FIXED.unpack_from(data, offset)
    offset += _RR_FIXED.size + rdlength
    if offset > len(data):
        raise _Bad("truncated record data")
    return offset, rtype


def find(message: bytes) -> TsigRecord | None:
    """The message's TSIG RR, None if it has none; ValueError if it is malformed or not
    the last additional record (RFC 8945 section 5.1)."""
    try:
        return _find(bytes(message))
    except (_Bad, struct.error, IndexError) as exc:
        raise ValueError(str(exc) or "malformed TSIG") from None


def _find(data: bytes) -> TsigRecord | None:
    if len(data) < _HEADER.size:
        raise _Bad("short header")
    _, _, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    offset = _HEADER.size
    for _ in range(qdcount):
        offset = _read_name(data, offset)[1] + 4
    found = None
    total = ancount + nscount + arcount
    for index in range(total):
        start = offset
        offset, rtype = _skip_rr(data, offset)
        if rtype == TSIG_TYPE:
            if index != total - 1 or index < ancount + nscount:
                raise _Bad("TSIG is not the last additional record (RFC 8945 section 5.1)")
            found = start
    if offset != len(data):
        raise _Bad("trailing bytes after the last record")
    return _read_tsig(data, found) if found is not None else None


def _read_tsig(data: bytes, start: int) -> TsigRecord:
    owner, offset = _read_name(data, start)
    _, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
    if rclass != ANY_CLASS or ttl != 0:
        raise _Bad("TSIG class must be ANY and TTL 0 (RFC 8945 section 4.2)")
    offset += _RR_FIXED.size
    end = offset + rdlength
    rdata = data[:end]                 # names inside may point backwards
    algorithm, offset = _read_name(rdata, offset)
    time_hi, time_lo, fudge, mac_size = struct.unpack_from(">HIHH", rdata, offset)
    offset += 10
    mac = rdata[offset:offset + mac_size]
    offset += mac_size
    original_id, error, other_len = struct.unpack_from(">HHH", rdata, offset)
    offset += 6
    other = rdata[offset:offset + other_len]
    if len(mac) != mac_size or len(other) != other_len or offset + other_len != end:
        raise _Bad("TSIG RDATA length does not match its fields")
    return TsigRecord(_name_text(owner), _name_wire(owner), _name_text(algorithm),
                      _name_wire(algorithm), (time_hi << 32) | time_lo, fudge, mac,
                      original_id, error, other, start)


def _strip(data: bytes, record: TsigRecord) -> bytes:
    """The message as it was before signing: no TSIG RR, ARCOUNT one lower."""
    arcount = struct.unpack_from(">H", data, 10)[0]
    return data[:10] + struct.pack(">H", arcount - 1) + data[12:record.start]


# MAC computation (RFC 8945 section 4.3).

def _hmac(key: TsigKey):
    return hmac.HMAC(key.secret, ALGORITHMS[key.algorithm][0]())


def _variables(key: TsigKey, time_signed: int, fudge: int, error: int, other: bytes) -> bytes:
    """The TSIG variables of section 4.3.3, names in canonical (lowercase) wire form."""
    return (_text_wire(key.name) + struct.pack(">HI", ANY_CLASS, 0) + _text_wire(key.algorithm)
            + _timers(time_signed, fudge) + struct.pack(">HH", error, len(other)) + other)


def _timers(time_signed: int, fudge: int) -> bytes:
    return struct.pack(">HIH", (time_signed >> 32) & 0xFFFF, time_signed & 0xFFFFFFFF, fudge)


def _mac(key: TsigKey, prior_mac: bytes | None, unsigned: bytes, original_id: int,
         tail: bytes) -> bytes:
    """HMAC over [prior MAC] + message with its original ID + ``tail``, truncated to the
    algorithm's length. ``prior_mac`` None: a request (no MAC goes first)."""
    context = _hmac(key)
    if prior_mac is not None:
        context.update(struct.pack(">H", len(prior_mac)) + prior_mac)
    context.update(struct.pack(">H", original_id) + unsigned[2:])
    context.update(tail)
    return context.finalize()[:ALGORITHMS[key.algorithm][1]]


def _rr(key_wire: bytes, algorithm_wire: bytes, time_signed: int, fudge: int, mac: bytes,
        original_id: int, error: int, other: bytes) -> bytes:
    rdata = (algorithm_wire + _timers(time_signed, fudge) + struct.pack(">H", len(mac)) + mac
             + struct.pack(">HHH", original_id, error, len(other)) + other)
    return key_wire + _RR_FIXED.pack(TSIG_TYPE, ANY_CLASS, 0, len(rdata)) + rdata


def _append(message: bytes, rr: bytes) -> bytes:
    arcount = struct.unpack_from(">H", message, 10)[0]
    if arcount == 0xFFFF:
        raise ValueError("ARCOUNT is full")
    return message[:10] + struct.pack(">H", arcount + 1) + message[12:] + rr


def sign(message: bytes, key: TsigKey, *, now: float, request_mac: bytes | None = None,
         fudge: int = DEFAULT_FUDGE, error: int = NOERROR, other: bytes = b"",
         time_signed: int | None = None) -> tuple[bytes, bytes]:
    """``message`` with a TSIG RR appended, and its MAC. ``request_mac`` None signs a
    request; bytes (possibly empty) sign the response to the request that carried it."""
    message = bytes(message)
    when = int(now) if time_signed is None else time_signed
    original_id = struct.unpack_from(">H", message)[0]
    mac = _mac(key, request_mac, message, original_id,
               _variables(key, when, fudge, error, other))
    rr = _rr(_text_wire(key.name), _text_wire(key.algorithm), when, fudge, mac,
             original_id, error, other)
    return _append(message, rr), mac


# Verifying (RFC 8945 section 5.2 for requests, 5.3.1 for responses).

def verify(message: bytes, lookup: Callable[[str], TsigKey | None], *, now: float,
           request_mac: bytes | None = None, max_fudge: int | None = None) -> Verdict:
    """Check the TSIG of ``message``: the key by name through ``lookup``, the algorithm,
    the MAC, then the time (section 5.2, in that order). ``max_fudge`` caps the window the
    signer asks for (our own fudge, section 5.2.3). Never raises on any input."""
    data = bytes(message)
    try:
        record = _find(data)
    except (_Bad, struct.error, IndexError) as exc:
        return Verdict("formerr", reason=str(exc) or "malformed TSIG")
    if record is None:
        return Verdict("unsigned", unsigned=data)
    unsigned = _strip(data, record)
    algorithm = algorithm_name(record.algorithm)
    if request_mac is not None and record.error != NOERROR:
        return Verdict("notauth", record.error, None, record, unsigned,
                       f"peer reports TSIG error {record.error}")
    key = lookup(record.key_name)
    if key is None or algorithm is None or key.algorithm != algorithm:
        return Verdict("notauth", BADKEY, None, record, unsigned, "unknown key or algorithm")
    return _check(key, record, unsigned, now, request_mac, max_fudge)


def _check(key, record, unsigned, now, request_mac, max_fudge=None) -> Verdict:
    full = ALGORITHMS[key.algorithm][1]
    hash_len = ALGORITHMS[key.algorithm][0].digest_size
    if not max(10, hash_len // 2) <= len(record.mac) <= hash_len:
        return Verdict("formerr", key=key, record=record, unsigned=unsigned,
                       reason="MAC size out of range (RFC 8945 section 5.2.2.1)")
    expected = _mac(key, request_mac, unsigned, record.original_id,
                    _variables(key, record.time_signed, record.fudge, record.error,
                               record.other))
    if not constant_time.bytes_eq(expected[:len(record.mac)], record.mac):
        return Verdict("notauth", BADSIG, key, record, unsigned, "MAC does not verify")
    if len(record.mac) < full:
        return Verdict("notauth", BADTRUNC, key, record, unsigned, "MAC truncated")
    fudge = record.fudge if max_fudge is None else min(record.fudge, max_fudge)
    if abs(int(now) - record.time_signed) > fudge:
        return Verdict("notauth", BADTIME, key, record, unsigned, "time outside fudge")
    return Verdict("ok", key=key, record=record, unsigned=unsigned)


# Responses.

def finish(response: bytes, verdict: Verdict, *, now: float) -> bytes:
    """``response`` (built without TSIG for the request judged by ``verdict``) made ready
    to send: signed when the request verified, the section 5.3.2 error response for a
    TSIG error, unchanged for an unsigned request or a FORMERR."""
    if verdict.status == "ok":
        return sign(response, verdict.key, now=now, request_mac=verdict.request_mac)[0]
    if verdict.status == "notauth":
        return error_response(response, verdict, now=now)
    return bytes(response)


def error_response(response: bytes, verdict: Verdict, *, now: float) -> bytes:
    """RCODE NOTAUTH and a TSIG RR with the error (RFC 8945 section 5.3.2): BADTIME and
    BADTRUNC signed with the request's key, the request time kept and ours in Other Data
    for BADTIME; BADKEY and BADSIG unsigned (empty MAC), key and algorithm copied."""
    record = verdict.record
    response = bytearray(response)
    response[3] = (response[3] & 0xF0) | NOTAUTH
    response = bytes(response)
    if verdict.error in (BADTIME, BADTRUNC) and verdict.key is not None:
        other = struct.pack(">HI", (int(now) >> 32) & 0xFFFF, int(now) & 0xFFFFFFFF) \
            if verdict.error == BADTIME else b""
        return sign(response, verdict.key, now=now, request_mac=record.mac,
                    fudge=record.fudge, error=verdict.error, other=other,
                    time_signed=record.time_signed)[0]
    original_id = struct.unpack_from(">H", response)[0]
    rr = _rr(record.key_wire, record.algorithm_wire, int(now), record.fudge, b"",
             original_id, verdict.error, b"")
    return _append(response, rr)


class StreamSigner:
    """Signs each message of a multi-message answer (RFC 8945 section 5.3.1): the first
    over the request MAC and the full variables, each later one over the previous MAC,
    the message and the timers only."""

    def __init__(self, verdict: Verdict, fudge: int = DEFAULT_FUDGE):
        if verdict.status != "ok":
            raise ValueError("only a verified request gets a signed stream")
        self.key = verdict.key
        self.fudge = fudge
        self._prior = verdict.request_mac
        self._first = True

    def sign(self, message: bytes, *, now: float) -> bytes:
        message = bytes(message)
        key, when = self.key, int(now)
        original_id = struct.unpack_from(">H", message)[0]
        if self._first:
            tail = _variables(key, when, self.fudge, NOERROR, b"")
        else:
            tail = _timers(when, self.fudge)
        mac = _mac(key, self._prior, message, original_id, tail)
        self._prior, self._first = mac, False
        rr = _rr(_text_wire(key.name), _text_wire(key.algorithm), when, self.fudge, mac,
                 original_id, NOERROR, b"")
        return _append(message, rr)
