"""Per-client token buckets for the HTTP API, and who the client is behind a proxy.

The reference node limits by TCP peer address only, so behind its shipped reverse proxy
every user shares one bucket (docs/compatibility.md §8, item 11). Here ``X-Forwarded-For`` is
believed only when the TCP peer is a configured trusted proxy, and then only as far as the
chain stays inside trusted proxies: the client is the right-most address that is not one
(the left part of the header is whatever the client wrote, MDN / RFC 7239 section 8.1).
"""

import ipaddress
from collections import OrderedDict
from typing import Callable, Iterable

MAX_TRACKED_KEYS = 10_000
MAX_FORWARDED_HOPS = 32


class TokenBucketLimiter:
    """``rate`` tokens per second up to ``burst``, per key; ``clock()`` gives seconds.

    At most ``max_keys`` buckets are kept (least recently used dropped first), so a flood of
    distinct clients costs bounded memory; a dropped client starts again with a full bucket.
    ``rate == 0`` disables the limit.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float], *,
                 max_keys: int = MAX_TRACKED_KEYS):
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict = OrderedDict()  # key -> (tokens, last refill time)

    def allow(self, key, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket; False (and nothing taken) if short."""
        if self.rate <= 0:
            return True
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)


class ProxyTrust:
    """Which TCP peers may speak for the client through ``X-Forwarded-For``."""

    def __init__(self, networks: Iterable[str] = ()):
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def trusts(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self._networks)

    def client(self, peer: str, forwarded_for: list[str] | None) -> str:
        """The client address for a request from TCP ``peer`` carrying these
        ``X-Forwarded-For`` header lines (None or empty when absent)."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [hop.strip() for line in forwarded_for for hop in line.split(",")]
        hops = hops[-MAX_FORWARDED_HOPS:]
        client = peer
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:
                break  # garbage: stop at the last address a trusted proxy vouched for
            client = str(ip)
            if not self.trusts(client):
                break
        return client


def _ip(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
