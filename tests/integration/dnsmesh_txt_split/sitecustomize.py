"""Loaded by the reference ``dnsmesh`` 0.7.5 CLI in tests (``PYTHONPATH``): its DNS UPDATE
writer quotes a whole TXT value as one character-string, which cannot hold more than 255
bytes (RFC 1035 section 3.3.14), so dnspython refuses every longer value. This replaces that
quoting, and nothing else, with one that splits the value into 255-byte strings, as every
other DNS client does. See tests/integration/test_public_dnsmesh.py."""

try:
    from dmp.network import dns_update_writer as _writer
except ImportError:         # not the reference's interpreter: nothing to patch
    _writer = None


def _quote_split(value: str) -> str:
    data = value.encode("utf-8")
    parts = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    quoted = []
    for part in parts:
        text = part.decode("utf-8", "surrogateescape")
        quoted.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(quoted)


if _writer is not None:
    _writer._quote_txt = _quote_split
