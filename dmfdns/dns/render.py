"""Rendering of the dnslib path: a decided ``Reply`` to response bytes (dnslib), with
truncation (RFC 2181 section 9: no partial RRsets) and our OPT; and the bare SERVFAIL the
transports send when building a response failed."""

from dataclasses import dataclass, field

from dnslib import DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from . import edns, query as wire

NOERROR, FORMERR, SERVFAIL = 0, 1, 2
BADVERS = 16                     # extended rcode, RFC 6891 section 9
_FLAG_QR, _FLAG_AA, _FLAG_TC, _FLAG_RD, _FLAG_CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0010


@dataclass
class Reply:
    """The decision for one query, before rendering."""

    rcode: int
    aa: bool = False
    answer: list = field(default_factory=list)
    authority: list = field(default_factory=list)
    additional: list = field(default_factory=list)
    options: list = field(default_factory=list)       # EDNS options for our OPT
    valid_cookie: bool = False                         # the query's server cookie is ours


def render(q: wire.Query, reply: Reply, max_udp, edns_payload: int):
    """Pack ``reply``; returns (bytes, rcode, truncated). Over the size limit: TC with
    the question and OPT only (RFC 2181 section 9: no partial RRsets); over TCP, where
    65535 bytes is the hard limit, SERVFAIL. ``edns_payload`` is the size our OPT
    advertises."""
    limit = edns.size_limit(q.opt, max_udp)
    response = pack(q, reply, edns_payload, full=True)
    if len(response) <= limit:
        return response, reply.rcode, False
    if max_udp is None:
        failure = Reply(SERVFAIL, options=reply.options)
        return pack(q, failure, edns_payload, full=True), SERVFAIL, False
    return pack(q, reply, edns_payload, full=False), reply.rcode, True


def pack(q, reply, edns_payload: int, *, full: bool) -> bytes:
    flags = (_FLAG_QR | (q.flags & 0x7800) | (q.flags & (_FLAG_RD | _FLAG_CD))
             | (_FLAG_AA if reply.aa else 0) | (reply.rcode & 0xF)
             | (0 if full else _FLAG_TC))
    record = DNSRecord(DNSHeader(id=q.id, bitmap=flags))
    if q.qname is not None and q.qdcount == 1:
        record.add_question(DNSQuestion(DNSLabel(q.qname), q.qtype, q.qclass))
    if full:
        record.rr, record.auth = list(reply.answer), list(reply.authority)
        record.ar = list(reply.additional)
    if q.opt_seen:
        options = [] if reply.rcode in (FORMERR, BADVERS) else reply.options
        do = q.opt is not None and q.opt.do
        record.ar.append(edns.response_opt(edns_payload, do=do,
                                           ext_rcode=reply.rcode >> 4, options=options))
    try:
        return bytes(record.pack())
    except Exception:       # e.g. a name dnslib refuses to encode: header-only SERVFAIL
        header = DNSHeader(id=q.id, bitmap=(flags & ~0x040F) | SERVFAIL)
        return bytes(DNSRecord(header).pack())


def servfail_for(query: bytes) -> bytes | None:
    """A bare SERVFAIL for ``query`` when building its response failed (a bug): the ID,
    opcode and RD copied, the question echoed when it can be walked; None for what gets
    no answer at all (shorter than a header, or a response)."""
    if len(query) < 12 or query[2] & 0x80:
        return None
    head = query[:2] + bytes((0x80 | (query[2] & 0x79), SERVFAIL))
    end = wire.question_end(query)
    if end is None:
        return head + bytes(8)
    return head + b"\x00\x01" + bytes(6) + query[12:end]
