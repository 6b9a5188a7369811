"""The connection admission policy shared by DNS over TCP and HTTP (dmfdns.conn_table)."""

from twisted.internet import task
from twisted.internet.testing import StringTransport

from dmfdns.conn_table import ConnectionTable, close_victim


def table(**kw):
    options = dict(max_total=8, max_per_client=8, grace=1.0)
    options.update(kw)
    return ConnectionTable(**options)


def open_many(t, client, count, now=0.0):
    conns = [object() for _ in range(count)]
    for conn in conns:
        assert t.make_room(client, now) == (True, None)
        t.opened(conn, client, now)
    return conns


def test_a_hog_loses_even_its_new_connections_to_a_small_client():
    t = table()
    hog = open_many(t, "hog", 8)
    assert t.make_room("hog", 0.5) == (False, None)          # its own newcomers: refused
    assert t.make_room("small", 0.5) == (True, hog[0])       # holds 8 > 8 // 4 and > 0


def test_new_connections_of_a_fair_share_client_are_spared():
    t = table()
    a, b = open_many(t, "a", 2), open_many(t, "b", 2)
    open_many(t, "c", 2), open_many(t, "d", 2)
    assert t.make_room("e", 0.5) == (False, None)            # nobody holds over a quarter
    t.request_read(b[1])
    assert t.make_room("e", 0.5) == (True, b[1])             # served: no longer new
    assert t.make_room("e", 2.0) == (True, a[0])             # past the grace, oldest first


def test_busy_connections_are_never_chosen():
    t = table(max_total=2, is_busy=lambda conn: conn == "answering")
    t.opened("answering", "x", 0.0)
    t.opened("other", "x", 0.0)
    t.set_busy("other", True)
    assert t.make_room("y", 5.0) == (False, None)
    t.set_busy("other", False)
    assert t.make_room("y", 5.0) == (True, "other")


def test_close_victim_lets_the_answer_out_then_aborts_a_client_that_does_not_read():
    clock, transport = task.Clock(), StringTransport()
    aborted = []
    transport.abortConnection = lambda: aborted.append(True)
    transport.disconnected = False
    close_victim(transport, clock, 1.0)
    assert transport.disconnecting and not aborted
    clock.advance(1.0)
    assert aborted == [True]
