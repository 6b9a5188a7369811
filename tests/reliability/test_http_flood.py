"""The HTTP eviction storm: 300 slow connections (a request line that never completes) from
one address, each reconnecting as soon as the node closes it, while another client asks
``/healthz`` on a new connection each time. Before new connections were spared until their
request was read, /healthz failed 70 of 73 times under this storm.

Run twice: with the default per-client cap (the flooder holds at most 64 connections) and
with the per-client cap as large as the total, where only the eviction order protects the
legitimate client.
"""

import selectors
import socket
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import threads

from node_support import http_call, http_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]

SLOW = 300
PROBES = 73


class Storm:
    """``SLOW`` slow connections from 127.0.0.2, reopened as soon as they close."""

    def __init__(self, port: int):
        self.port = port
        self.reconnects = 0
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        for _ in range(SLOW):
            self._open()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()

    def _open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.2", 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        self._selector.register(sock, selectors.EVENT_WRITE)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, events in self._selector.select(0.05):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE:       # connected (or failed)
                    self._selector.modify(sock, selectors.EVENT_READ)
                    try:
                        sock.send(b"GET /healthz HT")    # and never the rest
                    except OSError:
                        pass
                    continue
                try:
                    closed = sock.recv(4096) == b""
                except OSError:
                    closed = True
                if closed:
                    self._selector.unregister(sock)
                    sock.close()
                    self.reconnects += 1
                    self._open()


def probe(port: int) -> int:
    answered = 0
    for _ in range(PROBES):
        try:
            status, _, _ = http_call(port, "GET", "/healthz")
            answered += status == 200
        except OSError:                 # refused or reset: counted as not answered
            pass
        time.sleep(0.02)
    return answered


def storm_and_probe(port: int) -> tuple[int, int]:
    with Storm(port) as storm:
        time.sleep(1.5)                  # the storm's first connections are past their grace
        return probe(port), storm.reconnects


@pytest.mark.parametrize("per_client", [64, 256])
@pytest_twisted.inlineCallbacks
def test_healthz_answers_through_a_storm_of_reconnecting_slow_connections(node_with,
                                                                          per_client,
                                                                          figures):
    node = node_with("http", max_connections=256, max_connections_per_client=per_client)
    answered, reconnects = yield threads.deferToThread(storm_and_probe, http_port(node))
    figures(slow=SLOW, per_client=per_client, probes=PROBES, answered=answered,
            reconnects=reconnects)
    assert reconnects > 0                                 # the storm did reconnect
    assert answered == PROBES
