"""The DMPHeader, the AEAD's AAD and the outer DMPMessage (docs/wire-format.md §5.1, 5.2, 5.4).

The header travels in clear inside the erasure-coded outer message; the receiver rebuilds
the AAD by re-serialising the *parsed* header, so the JSON must be the one canonical form:
keys in a fixed order, compact separators, ASCII, plain integers, lowercase hex.

Two reference quirks are kept on purpose (section 15, quirks 1 and 6): the outer header
always says ``"total":1`` while the AAD says ``"total":0``; and a header with missing or
ill-typed fields is simply no message here (the reference raises on it).
"""

import json
import struct
from dataclasses import dataclass

MESSAGE_TYPES = ("DATA", "ACK", "DISCOVERY", "IDENTITY", "MAILBOX")
HEADER_VERSION = 1
MSG_ID_LEN = 16
USER_ID_LEN = 32
OUTER_TOTAL = 1            # placeholder the sender never updates; not the chunk count
SIGNATURE_PLACEHOLDER = bytes(32)
_LEN_PREFIX = struct.Struct(">H")
_PREKEY_ID = struct.Struct(">I")
MAX_HEADER_LEN = 0xFFFF
MIN_OUTER_LEN = _LEN_PREFIX.size + len(SIGNATURE_PLACEHOLDER)


@dataclass(frozen=True)
class DMPHeader:
    """One message's header: who to whom, when, for how long."""

    msg_id: bytes
    sender: bytes          # the sender's user_id, H(x25519_pub)
    recipient: bytes       # the recipient's user_id
    ts: int
    ttl: int
    type: str = "DATA"

    def __post_init__(self):
        if (len(self.msg_id) != MSG_ID_LEN or len(self.sender) != USER_ID_LEN
                or len(self.recipient) != USER_ID_LEN):
            raise ValueError("msg_id is 16 bytes, sender and recipient 32 bytes each")
        if self.type not in MESSAGE_TYPES:
            raise ValueError(f"type must be one of {', '.join(MESSAGE_TYPES)}")
        if not (_is_uint(self.ts) and _is_uint(self.ttl)):
            raise ValueError("ts and ttl are non-negative integers")

    def to_json(self, *, total: int, chunk: int = 0) -> bytes:
        """The canonical JSON bytes with the given ``total`` and ``chunk`` fields."""
        fields = {
            "v": HEADER_VERSION,
            "type": self.type,
            "msg_id": self.msg_id.hex(),
            "sender": self.sender.hex(),
            "recipient": self.recipient.hex(),
            "total": total,
            "chunk": chunk,
            "ts": self.ts,
            "ttl": self.ttl,
        }
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")

    @classmethod
    def from_dict(cls, fields) -> "DMPHeader | None":
        """The header described by parsed JSON, or None if a field is missing or ill-typed."""
        if not isinstance(fields, dict):
            return None
        msg_id = _hex_field(fields.get("msg_id"), MSG_ID_LEN)
        sender = _hex_field(fields.get("sender"), USER_ID_LEN)
        recipient = _hex_field(fields.get("recipient"), USER_ID_LEN)
        ts, ttl = fields.get("ts"), fields.get("ttl")
        if (None in (msg_id, sender, recipient)
                or fields.get("type") not in MESSAGE_TYPES
                or not all(_is_uint(fields.get(k)) for k in ("v", "total", "chunk"))
                or not _is_uint(ts) or not _is_uint(ttl)):
            return None
        return cls(msg_id, sender, recipient, ts, ttl, fields["type"])


def aad(header: DMPHeader, prekey_id: int) -> bytes:
    """AAD = header JSON with total = 0 and chunk = 0, then u32_be(prekey_id) (section 5.2).

    ``prekey_id`` is the manifest's, 0 when the recipient's long-term key was used.
    """
    return header.to_json(total=0, chunk=0) + _PREKEY_ID.pack(prekey_id)


def encode_outer(header: DMPHeader, payload: bytes) -> bytes:
    """u16_be(len(H)) || H || payload || 32 zero bytes, H with "total":1 (section 5.4)."""
    head = header.to_json(total=OUTER_TOTAL, chunk=0)
    if len(head) > MAX_HEADER_LEN:
        raise ValueError("header JSON longer than 65535 bytes")
    return _LEN_PREFIX.pack(len(head)) + head + bytes(payload) + SIGNATURE_PLACEHOLDER


def decode_outer(data: bytes) -> tuple[DMPHeader, bytes] | None:
    """(header, encrypted payload) of an outer message, or None; never raises.

    The trailing 32-byte signature placeholder is ignored, whatever it holds.
    """
    if not isinstance(data, (bytes, bytearray)) or len(data) < MIN_OUTER_LEN:
        return None
    (head_len,) = _LEN_PREFIX.unpack_from(data)
    payload_end = len(data) - len(SIGNATURE_PLACEHOLDER)
    head_end = _LEN_PREFIX.size + head_len
    if head_end > payload_end:
        return None
    header = DMPHeader.from_dict(_json_object(bytes(data[_LEN_PREFIX.size:head_end])))
    if header is None:
        return None
    return header, bytes(data[head_end:payload_end])


def _json_object(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8, bad JSON and over-long integers.
        return None


def _is_uint(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _hex_field(value, length: int) -> bytes | None:
    """Bytes of a hex string field of exactly ``length`` bytes, or None."""
    if not isinstance(value, str) or len(value) != 2 * length:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    # fromhex skips whitespace, so the length is checked on the result too.
    return raw if len(raw) == length else None
