"""Response-rate limiting as a policy of the responder: buckets per client prefix, answer
class and name, slip (TC or BADCOOKIE), exemptions (valid server cookie, TCP), counters
and a rate-limited report; the responder and MemoryStore are real, time is passed in."""

import pytest
from dnslib import CLASS, EDNS0, QTYPE, DNSHeader, DNSQuestion, DNSRecord, EDNSOption

from dmfdns.dns import cookies
from dmfdns.dns.responder import Responder, ResponderSettings
from dmfdns.dns.rrl import ResponseRateLimiter, RrlSettings
from dmfdns.dns.zone import parse_zone
from dmfdns.store.memory_store import MemoryStore

T0 = 1_700_000_000.0
SECRET = bytes(range(16))
ZONE = parse_zone("""\
$ORIGIN mesh.test.
$TTL 3600
@    SOA ns1 hostmaster 1 3600 600 604800 60
@    NS  ns1
ns1  A   192.0.2.53
""")
CLIENT_COOKIE = bytes.fromhex("2464c4abcf10c957")


def make(**rrl):
    store = MemoryStore()
    store.put("a.mesh.test", "v" * 200, expiry=T0 + 3600, now=T0)
    store.put("b.mesh.test", "w", expiry=T0 + 3600, now=T0)
    reports = []
    responder = Responder([ZONE], store, ResponderSettings(cookie_secret=SECRET))
    limiter = ResponseRateLimiter(RrlSettings(**{"rate": 5, "slip": 2, **rrl}),
                                  responder.counters, cookie_secret=SECRET,
                                  report=reports.append)
    limited = Responder([ZONE], store, ResponderSettings(cookie_secret=SECRET),
                        responder.counters, policies=[limiter])
    return limited, reports


def query(name="a.mesh.test", qtype=QTYPE.TXT, options=None, qid=7):
    record = DNSRecord(DNSHeader(id=qid), q=DNSQuestion(name, qtype, CLASS.IN))
    if options is not None:
        record.add_ar(EDNS0(udp_len=1232, opts=options))
    return bytes(record.pack())


def ask(responder, wire, client="192.0.2.1", now=T0, proto="udp"):
    return responder.respond(wire, now=now, max_udp=1232, proto=proto, client=client)


def outcomes(responder, n, wire=None, client="192.0.2.1", now=T0):
    """``[full | tc | None, ...]`` for ``n`` queries at the same moment."""
    seen = []
    for _ in range(n):
        got = ask(responder, wire or query(), client, now)
        seen.append(None if got is None else "tc" if DNSRecord.parse(got).header.tc
                    else "full")
    return seen


def test_past_the_burst_every_second_response_slips_and_the_rest_are_dropped():
    responder, _ = make()
    assert outcomes(responder, 9) == ["full"] * 5 + [None, "tc", None, "tc"]
    assert responder.counters.rrl == {"dropped": 2, "slipped": 2}


def test_a_slipped_response_is_the_header_and_question_with_tc_and_our_opt():
    responder, _ = make(rate=1, slip=1)
    wire = query(options=[])
    full = ask(responder, wire)
    slipped = ask(responder, wire)
    parsed = DNSRecord.parse(slipped)
    assert parsed.header.tc and parsed.header.id == 7 and not parsed.rr and not parsed.auth
    assert parsed.q == DNSRecord.parse(full).q
    assert [rr.rtype for rr in parsed.ar] == [QTYPE.OPT] and len(slipped) < 60


def test_the_bucket_refills_at_the_rate():
    responder, _ = make()
    outcomes(responder, 20)
    assert outcomes(responder, 2, now=T0 + 0.2) == ["full", "tc"]     # 0.2 s: one token
    assert outcomes(responder, 5, now=T0 + 1.5) == ["full"] * 5       # full again


def test_buckets_are_per_prefix_class_and_name():
    responder, _ = make()
    outcomes(responder, 10)
    assert outcomes(responder, 1, client="192.0.2.200") == ["tc"]       # same /24
    assert outcomes(responder, 1, client="192.0.3.1") == ["full"]       # another /24
    assert outcomes(responder, 1, wire=query("b.mesh.test")) == ["full"]  # another name
    for i in range(5):                                 # NXDOMAIN: one bucket for all names
        assert outcomes(responder, 1, wire=query(f"nx{i}.mesh.test")) == ["full"]
    assert outcomes(responder, 1, wire=query("nx9.mesh.test")) == [None]
    assert outcomes(responder, 1, wire=query("other.example")) == ["full"]   # error class


def test_ipv6_clients_share_a_56():
    responder, _ = make()
    outcomes(responder, 10, client="2001:db8:0:ab00::1")
    assert outcomes(responder, 1, client="2001:db8:0:abff::2") == ["tc"]
    assert outcomes(responder, 1, client="2001:db8:0:ac00::1") == ["full"]


def test_a_valid_server_cookie_and_tcp_are_never_limited():
    responder, _ = make(rate=1)
    server = cookies.server_cookie(SECRET, CLIENT_COOKIE, cookies.client_address("192.0.2.1"),
                                   T0)
    valid = query(options=[EDNSOption(10, CLIENT_COOKIE + server)])
    assert all(DNSRecord.parse(ask(responder, valid)).rr for _ in range(20))
    assert all(ask(responder, query(), proto="tcp") for _ in range(20))
    assert responder.counters.rrl == {}


def test_a_client_cookie_without_a_valid_server_cookie_slips_as_badcookie():
    responder, _ = make(rate=1, slip=1)
    wire = query(options=[EDNSOption(10, CLIENT_COOKIE)])
    ask(responder, wire)
    slipped = DNSRecord.parse(ask(responder, wire))
    opt = slipped.ar[0]
    assert slipped.header.rcode == 23 & 0xF and (opt.ttl >> 24) == 23 >> 4     # BADCOOKIE
    assert not slipped.header.tc and not slipped.rr
    cookie = opt.rdata[0].data
    assert cookies.verify(SECRET, cookie, cookies.client_address("192.0.2.1"), T0)
    retry = query(options=[EDNSOption(10, cookie)])      # the resolver retries with it
    assert DNSRecord.parse(ask(responder, retry)).rr


@pytest.mark.parametrize("slip, expected", [(0, [None, None, None]), (1, ["tc"] * 3),
                                            (3, [None, None, "tc"])])
def test_slip_zero_drops_all_and_one_slips_all(slip, expected):
    responder, _ = make(rate=1, slip=slip)
    assert outcomes(responder, 4)[1:] == expected


def test_the_table_is_bounded():
    responder, _ = make(rate=1, table_size=3)
    for i in range(10):
        outcomes(responder, 2, client=f"10.0.{i}.1")
    limiter = responder._policies[0]
    assert len(limiter._buckets) <= 3


def test_the_report_names_one_prefix_per_period():
    responder, reports = make(rate=1, slip=2, log_period=30)
    outcomes(responder, 50)
    assert reports == ["RRL limiting 192.0.2.0/24 (positive answers): 0 slipped, "
                       "1 dropped since the last report"]
    outcomes(responder, 10, now=T0 + 31)
    assert len(reports) == 2 and "25 slipped, 24 dropped" in reports[1]


def test_off_when_the_rate_is_zero():
    assert not RrlSettings().enabled and RrlSettings(rate=20).enabled
    with pytest.raises(ValueError):
        RrlSettings(ipv4_prefix=33)
