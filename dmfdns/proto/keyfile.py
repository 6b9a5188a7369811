"""Key file contents: a 32-byte Ed25519 seed as 32 raw bytes or 64 hex characters."""

import string


def parse_seed(data: bytes) -> bytes | None:
    """The seed held by a key file's bytes, or None if it is neither form."""
    text = data.strip()
    if len(text) == 64 and all(chr(c) in string.hexdigits for c in text):
        return bytes.fromhex(text.decode("ascii"))
    if len(data) == 32:
        return bytes(data)
    return None
