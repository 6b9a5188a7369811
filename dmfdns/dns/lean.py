"""The hand-written fast path for the common query: a TXT question for a name the store
holds live values for (DESIGN.md section 4; dnslib costs ~325 us a query, this ~10 us).

It answers only this exact shape and returns None for anything else, so the responder's
dnslib path decides:

* header: QR=0, opcode QUERY, QDCOUNT=1, ANCOUNT=NSCOUNT=0, ARCOUNT 0 or 1;
* question: an uncompressed name inside one of our zones, type TXT, class IN;
* additional: nothing, or exactly one OPT with owner root, EDNS version 0, extended rcode
  0 and no options (any other OPT goes the slow way: cookies, NSID, BADVERS, FORMERR);
* the name holds no static zone data and has at least one live value in the store;
* the response fits the size limit (the dnslib path sets TC otherwise).

The response is spliced: header, the question bytes as received (0x20 case kept), one RR
per live entry (``c00c`` pointer to the question name, TXT IN, the RRset's TTL, the blob's
own rdlength and rdata) and our OPT when the query had one. tests/test_dns_lean.py holds it
byte-for-byte to the dnslib path.
"""

import struct

_ENTRY = struct.Struct(">QH").unpack_from
_COUNTS_NO_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_TXT_IN = b"\x00\x10\x00\x01"
_RR_HEAD = b"\xc0\x0c\x00\x10\x00\x01"
_OPT_HEAD = b"\x00\x00\x29"
_MIN_UDP = 512


class LeanPath:
    """Built once per responder from the zones' static owner names and suffixes."""

    def __init__(self, zones, store, *, answer_ttl: int, edns_payload: int):
        self._origins = frozenset(zone.origin for zone in zones)
        self._suffixes = tuple("." + zone.origin for zone in zones)
        self._static = frozenset().union(*(zone.owners for zone in zones))
        self._packed_txt = store.packed_txt
        self._ttl = answer_ttl
        self._payload = struct.pack(">H", edns_payload)

    def answer(self, query: bytes, now: float, max_udp: int | None) -> bytes | None:
        size = len(query)
        if size < 17 or query[2] & 0xF8:            # QR=0 and opcode QUERY only
            return None
        counts = query[4:12]
        has_opt = counts == _COUNTS_OPT
        if not has_opt and counts != _COUNTS_NO_OPT:
            return None
        labels, pos = [], 12
        while True:
            length = query[pos]
            if length == 0:
                break
            if length > 63:
                return None
            labels.append(query[pos + 1:pos + 1 + length])
            pos += 1 + length
            if pos >= size:
                return None
        qend = pos + 5
        if pos > 266 or query[pos + 1:qend] != _TXT_IN:   # 255-octet name limit
            return None
        if has_opt:
            if size != qend + 11 or query[qend:qend + 3] != _OPT_HEAD \
                    or query[qend + 5:qend + 7] != b"\x00\x00" \
                    or query[qend + 9:qend + 11] != b"\x00\x00":
                return None
            payload = (query[qend + 3] << 8) | query[qend + 4]
            limit = 65535 if max_udp is None else min(max_udp, max(payload, _MIN_UDP))
        else:
            if size != qend:
                return None
            limit = 65535 if max_udp is None else min(max_udp, _MIN_UDP)
        raw = b".".join(labels).lower()
        if raw.count(b".") != len(labels) - 1 or not raw.isascii():
            return None
        name = raw.decode()
        if name in self._static or not (name in self._origins
                                        or name.endswith(self._suffixes)):
            return None
        try:
            blob = self._packed_txt(name)
        except Exception:       # a name the store refuses, or a store failure: slow path
            return None
        if not blob:
            return None
        return self._splice(query, qend, blob, now, limit, has_opt)

    def _splice(self, query, qend, blob, now, limit, has_opt):
        now_ms = round(now * 1000)        # the store's rounding (changelog.to_ms)
        ttl_ms = self._ttl * 1000
        records, offset, end = [], 0, len(blob)
        while offset < end:
            expiry_ms, length = _ENTRY(blob, offset)
            stop = offset + 10 + length
            if expiry_ms > now_ms:
                if expiry_ms - now_ms < ttl_ms:
                    ttl_ms = expiry_ms - now_ms
                records.append(blob[offset + 8:stop])
            offset = stop
        if not records:
            return None
        head = _RR_HEAD + (ttl_ms // 1000).to_bytes(4, "big")
        flags = bytes((0x84 | (query[2] & 0x01), query[3] & 0x10))
        parts = [query[:2], flags, b"\x00\x01", len(records).to_bytes(2, "big"),
                 b"\x00\x00\x00\x01" if has_opt else b"\x00\x00\x00\x00",
                 query[12:qend], head, head.join(records)]
        if has_opt:
            parts.append(_OPT_HEAD + self._payload + b"\x00\x00"
                         + bytes((query[qend + 7] & 0x80, 0)) + b"\x00\x00")
        response = b"".join(parts)
        return response if len(response) <= limit else None
