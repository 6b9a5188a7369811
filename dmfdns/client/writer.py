"""Record writes over HTTP: one node (``HttpNode``) and a quorum fan-out (``FanoutWriter``).

A node takes ``POST /v1/records/{name}`` with ``{"value", "ttl"}`` (201) and ``DELETE`` with
``{"value"}`` (204, or 404 when nothing matched), as the reference node does (docs/compatibility.md
§2.1). Every request has a deadline (connect and whole exchange), a cap on the
response body it will read, and at most ``max_in_flight`` requests per node at a time.

The fan-out writer sends each write to every node at once and reports success as soon as a
majority (``quorum``) has acknowledged it; the reference's ``ceil(N/2)`` is not a majority
for an even N, and the union reader's guarantee rests on write and read quorums
intersecting. The remaining requests go on in the background; ``drain()`` waits for them,
so a short-lived CLI process still reaches every live node (which is what keeps a cluster
without anti-entropy consistent).
"""

import json
from dataclasses import dataclass
from urllib.parse import quote

from twisted.internet import defer

from ..outbound.client import DEFAULT_TIMEOUT, HttpClient
from ..outbound.errors import OutboundError, check_status

MAX_RESPONSE_BYTES = 64 * 1024
MAX_IN_FLIGHT = 8


class WriteError(Exception):
    """A write was refused or could not reach enough nodes (message fit for the CLI)."""


def quorum(count: int) -> int:
    """A strict majority of ``count`` nodes."""
    return count // 2 + 1


@dataclass
class NodeHealth:
    successes: int = 0
    failures: int = 0
    last_error: str = ""


class HttpNode:
    """The record API of one node at ``base_url`` (``http(s)://host:port``), reached through
    ``client`` (an outbound ``HttpClient``, shared by the nodes of a writer; one is made
    when none is given)."""

    def __init__(self, reactor, base_url: str, *, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, max_response: int = MAX_RESPONSE_BYTES,
                 max_in_flight: int = MAX_IN_FLIGHT, client: HttpClient | None = None):
        self.base_url = base_url.rstrip("/")
        self.token, self.timeout, self.max_response = token, timeout, max_response
        self.client = client or HttpClient(reactor, timeout=timeout, max_bytes=max_response,
                                           max_per_origin=max_in_flight)
        self.slots = defer.DeferredSemaphore(max_in_flight)
        self.health = NodeHealth()

    def __str__(self) -> str:
        return self.base_url

    def publish(self, name: str, value: str, ttl: int):
        body = {"value": value, "ttl": int(ttl)}
        return self._write("POST", name, body, ok=(200, 201))

    def delete(self, name: str, value: str):
        # 404: nothing matched, which is what a delete wants.
        return self._write("DELETE", name, {"value": value}, ok=(200, 204, 404))

    def _write(self, method: str, name: str, body: dict, ok):
        return self.slots.run(self._request, method, name, body, ok)

    @defer.inlineCallbacks
    def _request(self, method, name, body, ok):
        url = f"{self.base_url}/v1/records/{quote(name, safe='')}"
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        try:
            response = yield self.client.request(method, url, headers, payload,
                                                 timeout=self.timeout,
                                                 max_bytes=self.max_response)
            check_status(response, ok)
        except OutboundError as exc:
            self.health.failures += 1
            self.health.last_error = f"{self.base_url}: {exc.detail}"
            raise WriteError(self.health.last_error) from None
        self.health.successes += 1
        return response.status

    def close(self):
        return self.client.close()


class FanoutWriter:
    """Writes to every node; a write succeeds once ``quorum(len(nodes))`` acknowledged it."""

    def __init__(self, nodes):
        if not nodes:
            raise ValueError("a writer needs at least one node")
        self.nodes = list(nodes)
        self.needed = quorum(len(self.nodes))
        self._in_flight = set()

    def publish(self, name: str, value: str, ttl: int):
        return self._fan_out(lambda node: node.publish(name, value, ttl), name)

    def delete(self, name: str, value: str):
        return self._fan_out(lambda node: node.delete(name, value), name)

    def _fan_out(self, call, name: str):
        result = defer.Deferred()
        state = {"ok": 0, "failed": 0, "errors": []}

        def succeeded(_):
            state["ok"] += 1
            if state["ok"] == self.needed and not result.called:
                result.callback(state["ok"])

        def failed(failure):
            state["failed"] += 1
            state["errors"].append(failure.getErrorMessage())
            if state["failed"] > len(self.nodes) - self.needed and not result.called:
                result.errback(WriteError(
                    f"{name}: only {state['ok']} of {len(self.nodes)} nodes took the write "
                    f"(need {self.needed}): " + "; ".join(state["errors"])))

        for node in self.nodes:
            request = defer.maybeDeferred(call, node)
            request.addCallbacks(succeeded, failed)
            self._track(request)
        return result

    def _track(self, request):
        self._in_flight.add(request)
        request.addBoth(lambda _: self._in_flight.discard(request))

    def drain(self):
        """Fires when every request sent so far has finished (each has its own deadline)."""
        return defer.DeferredList(list(self._in_flight), consumeErrors=True)

    def close(self):
        """Close the nodes' idle connections (a client shared between nodes closes once)."""
        closers = {id(getattr(n, "client", n)): n for n in self.nodes}.values()
        return defer.DeferredList([defer.maybeDeferred(getattr(n, "close", lambda: None))
                                   for n in closers], consumeErrors=True)
