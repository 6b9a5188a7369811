"""Drive the real HTTP site without sockets: raw request bytes in over a StringTransport,
raw response bytes out, parsed just enough to assert on (shared by tests/test_http_*.py)."""

import json
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from dmfdns.http.auth import WriteAuth
from dmfdns.http.site import make_site
from dmfdns.store.credentials import Credentials
from dmfdns.store.writes import WriteService
from dmfdns.metrics import NodeMetrics
from dmfdns.store.memory_store import MemoryStore

NOW = 1_800_000_000.0
ZONE = "mesh.test"


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def parse_responses(data: bytes) -> list[Response]:
    """Every complete HTTP/1.1 response in ``data`` (Content-Length framed or empty)."""
    responses = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {data!r}"
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        length = int(headers.get("content-length", "0"))
        responses.append(Response(status, headers, rest[:length]))
        data = rest[length:]
    return responses


def request_bytes(method: str, path: str, body=None, headers=None) -> bytes:
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: node.test"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None and not any(k.lower() == "content-length" for k in (headers or {})):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


@dataclass
class Connection:
    channel: object
    transport: StringTransport
    clock: object = None     # advanced by 0 after each send: group commits run then

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)
        if self.clock is not None:
            self.clock.advance(0)

    def output(self) -> bytes:
        return self.transport.value()

    def responses(self) -> list[Response]:
        return parse_responses(self.output())

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


@dataclass
class Harness:
    """A node's site over a MemoryStore and a task.Clock."""

    auth_mode: str = "open"
    operator_token: str = ""
    tokens: object = None
    site_options: dict = field(default_factory=dict)
    write_options: dict = field(default_factory=dict)   # operator_key, cluster_base, limits

    def __post_init__(self):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore(node_id="test")
        if self.tokens is None and self.auth_mode == "multi-tenant":
            self.tokens = Credentials(self.store)
        self.registry = CollectorRegistry()
        self.metrics = NodeMetrics(self.registry)
        self.metrics.watch_store(self.store)
        self.auth = WriteAuth(self.auth_mode, operator_token=self.operator_token,
                              tokens=self.tokens, clock=self.clock.seconds)
        self.writes = WriteService(self.store, zones=(ZONE,),
                                   observe=self.metrics.observe_write, **self.write_options)
        self.http = make_site(store=self.store, writes=self.writes, clock=self.clock,
                              metrics=self.metrics, auth=self.auth, **self.site_options)
        self.site = self.http.site

    def connect(self, host: str = "127.0.0.1", port: int = 40000) -> Connection | None:
        address = IPv4Address("TCP", host, port)
        channel = self.site.buildProtocol(address)
        if channel is None:
            return None
        transport = StringTransport(peerAddress=address,
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8053))
        channel.makeConnection(transport)
        return Connection(channel, transport, self.clock)

    def raw(self, data: bytes, **connect) -> Connection:
        connection = self.connect(**connect)
        connection.send(data)
        return connection

    def request(self, method: str, path: str, body=None, headers=None, **connect) -> Response:
        responses = self.raw(request_bytes(method, path, body, headers), **connect).responses()
        assert len(responses) == 1, responses
        return responses[0]

    def metric(self, name: str, labels: dict | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})
