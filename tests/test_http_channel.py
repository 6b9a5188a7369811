"""Connection-level robustness: body caps before reading, read deadlines, malformed input,
the connection cap with idle eviction. Raw bytes over StringTransport, time from task.Clock."""

import json

import pytest
from twisted.web import resource, server

from http_support import Harness, parse_responses, request_bytes


@pytest.fixture
def node():
    return Harness(site_options={"max_body_bytes": 1024, "idle_timeout": 30.0,
                                 "request_timeout": 5.0, "max_connections": 3})


def error_of(connection):
    (response,) = connection.responses()
    return response.status, json.loads(response.body)


def test_an_oversized_content_length_is_413_before_the_body_is_read(node):
    connection = node.raw(b"POST /v1/records/a.mesh.test HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 1025\r\n\r\n")
    assert error_of(connection) == (413, {"error": "request body exceeds cap of 1024 bytes"})
    assert connection.closed
    # Whatever the client sends next is not read: no second response, nothing stored.
    connection.send(b'{"value": "x"}' + b" " * 2000)
    assert len(connection.responses()) == 1
    assert node.store.stats().values == 0
    assert node.metric("dmfdns_http_requests_total",
                       {"handler": "none", "method": "other", "code": "413"}) == 1


def test_expect_100_continue_gets_413_instead_of_continue(node):
    connection = node.raw(b"POST /v1/records/a.mesh.test HTTP/1.1\r\nContent-Length: 5000\r\n"
                          b"Expect: 100-continue\r\n\r\n")
    assert b"100 Continue" not in connection.output()
    assert error_of(connection)[0] == 413


def test_a_body_at_the_cap_is_read(node):
    body = json.dumps({"value": "x" * 1000}).encode()
    body += b" " * (1024 - len(body))
    response = node.request("POST", "/v1/records/a.mesh.test", body)
    assert response.status == 201


def test_a_chunked_body_is_capped_as_it_arrives(node):
    chunk = b"x" * 600
    connection = node.raw(b"POST /v1/records/a.mesh.test HTTP/1.1\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n"
                          + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
    assert error_of(connection)[0] == 413
    assert connection.closed


def test_a_small_chunked_body_works(node):
    body = b'{"value": "chunked"}'
    connection = node.raw(b"POST /v1/records/a.mesh.test HTTP/1.1\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n"
                          + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert connection.responses()[0].status == 201


@pytest.mark.parametrize("raw", [
    b"POST /v1/records/a.mesh.test HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/records/a.mesh.test HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/records/a.mesh.test HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /health HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
])
def test_malformed_requests_get_a_json_400_not_a_dropped_connection(node, raw):
    connection = node.raw(raw)
    status, body = error_of(connection)
    assert status == 400 and body == {"error": "malformed request"}
    assert connection.closed


def test_an_overlong_header_line_is_431(node):
    connection = node.raw(b"GET /health HTTP/1.1\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n")
    assert error_of(connection)[0] == 431


def test_too_many_header_bytes_is_400(node):
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(20))
    connection = node.raw(b"GET /health HTTP/1.1\r\n" + headers + b"\r\n")
    assert error_of(connection)[0] == 400


def test_a_request_dribbled_too_slowly_gets_408(node):
    connection = node.raw(b"GET /hea")
    node.clock.advance(3)
    connection.send(b"lth HTTP/1.1\r\n")  # activity does not extend the request deadline
    node.clock.advance(2.1)
    status, body = error_of(connection)
    assert (status, body) == (408, {"error": "request not received in time"})
    assert connection.closed
    assert node.site.counters.slow_requests == 1


def test_the_read_deadline_is_per_request(node):
    connection = node.connect()
    for _ in range(3):
        connection.send(request_bytes("GET", "/healthz"))
        node.clock.advance(4)
    assert [r.status for r in connection.responses()] == [200, 200, 200]
    assert not connection.closed


def test_an_idle_connection_is_closed_after_the_idle_timeout(node):
    connection = node.connect()
    connection.send(request_bytes("GET", "/healthz"))
    node.clock.advance(29)
    assert not connection.closed
    node.clock.advance(2)
    assert connection.closed
    assert node.site.counters.idle_timeouts == 1


def test_pipelined_requests_are_answered_in_order(node):
    connection = node.raw(request_bytes("POST", "/v1/records/p.mesh.test", {"value": "1"})
                          + request_bytes("GET", "/v1/records/p.mesh.test")
                          + request_bytes("GET", "/nowhere"))
    assert [r.status for r in connection.responses()] == [201, 200, 404]


def test_http_1_0_closes_after_the_response(node):
    connection = node.raw(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert parse_responses(connection.output())[0].status == 200
    assert connection.closed


def test_the_oldest_idle_connection_is_evicted_at_the_cap(node):
    first, second, third = node.connect(port=1), node.connect(port=2), node.connect(port=3)
    node.clock.advance(2)   # past the grace of new connections
    first.send(b"GET /he")  # recent activity: first is now the most recently active
    fourth = node.connect(port=4)
    assert fourth is not None
    assert second.closed and not first.closed and not third.closed
    assert node.site.counters.connections_evicted == 1
    assert node.site.counters.connections_open == 3
    fourth.send(request_bytes("GET", "/healthz"))
    assert fourth.responses()[0].status == 200


class _Hanging(resource.Resource):
    """A leaf that never answers, so its connection stays busy."""

    isLeaf = True

    def render(self, request):
        return server.NOT_DONE_YET


def test_busy_connections_are_never_evicted_and_a_full_house_refuses(node):
    node.http.add("hang", _Hanging())
    busy = [node.connect(port=p) for p in (1, 2, 3)]
    for connection in busy:
        connection.send(request_bytes("GET", "/hang"))
    assert node.connect(port=4) is None
    assert node.site.counters.connections_refused == 1
    assert not any(connection.closed for connection in busy)


def test_a_new_connection_is_not_evicted_before_its_request_is_read(node):
    """The eviction storm: slow clients reconnecting at once must not close a connection
    that was just accepted and has not been read yet; the newcomers are refused instead
    until an older connection is past its grace."""
    slow = [node.connect(host="192.0.2.66", port=p) for p in (1, 2, 3)]
    node.clock.advance(2)
    legitimate = node.connect(host="198.51.100.7", port=9)      # evicts a slow one
    assert legitimate is not None and slow[0].closed
    storm = [node.connect(host="192.0.2.66", port=p) for p in (4, 5, 6, 7)]
    assert None not in storm[:2] and slow[1].closed and slow[2].closed   # past their grace
    assert storm[2:] == [None, None]                              # every other one is new
    assert not legitimate.closed
    legitimate.send(request_bytes("GET", "/healthz"))
    assert legitimate.responses()[0].status == 200


def test_a_client_at_its_cap_closes_its_own_quiet_connection():
    harness = Harness(site_options={"max_connections": 10, "max_connections_per_client": 2})
    own = [harness.connect(host="192.0.2.66", port=p) for p in (1, 2)]
    other = harness.connect(host="198.51.100.7", port=3)
    assert harness.connect(host="192.0.2.66", port=4) is None     # both of its own are new
    harness.clock.advance(2)
    assert harness.connect(host="192.0.2.66", port=5) is not None
    assert own[0].closed and not own[1].closed and not other.closed


def test_connection_counters_follow_open_and_close(node):
    connection = node.connect()
    assert node.site.counters.connections_open == 1
    connection.transport.loseConnection()
    connection.channel.connectionLost(None)
    assert node.site.counters.connections_open == 0
    assert node.site.counters.connections_accepted == 1


def test_hundreds_of_pipelined_requests_in_one_read_are_all_answered(node):
    connection = node.raw(request_bytes("GET", "/healthz") * 500)
    assert [r.status for r in connection.responses()] == [200] * 500


@pytest.mark.parametrize("target", [b"http://dmp.mesh.test/stats", b"HTTP://x:8053/stats",
                                    b"https://dmp.mesh.test/stats?x=1"])
def test_a_request_target_in_absolute_form_is_served(node, target):
    # RFC 9112 section 3.2.2 (what a client sends through a forward proxy).
    connection = node.raw(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    (response,) = connection.responses()
    assert response.status == 200 and "records" in json.loads(response.body)


def test_an_absolute_form_without_a_path_is_the_root(node):
    connection = node.raw(b"GET http://dmp.mesh.test HTTP/1.1\r\nHost: x\r\n\r\n")
    (response,) = connection.responses()
    assert response.status == 200 and json.loads(response.body)["service"] == "dmfdns"
