"""TXT character-strings (RFC 1035 section 3.3.14): split and join by bytes.

A TXT value longer than 255 bytes is carried as several character-strings in one RR; split
points are not semantic, readers concatenate.
"""

MAX_STRING = 255


def split(value: bytes) -> list[bytes]:
    """Cut ``value`` into <= 255-byte character-strings (one empty string for b"")."""
    if not value:
        return [b""]
    return [value[i:i + MAX_STRING] for i in range(0, len(value), MAX_STRING)]


def join(strings) -> bytes:
    return b"".join(strings)


def rdata_length(value: bytes) -> int:
    """``len(rdata(value))`` without building it."""
    return len(value) + max(1, -(-len(value) // MAX_STRING))


def rdata(value: bytes) -> bytes:
    """TXT RDATA: each character-string with its one-byte length prefix."""
    return b"".join(bytes([len(s)]) + s for s in split(value))
