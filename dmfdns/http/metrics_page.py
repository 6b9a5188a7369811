"""``/metrics``: the Prometheus text exposition of the node's own registry.

prometheus-client's ``MetricsResource`` renders the global registry and is tied to the
global reactor, so this small endpoint renders the injected registry with
``generate_latest`` instead (docs/decisions.md §5). When tokens are configured (the metrics
token, and the operator token as the reference accepts), a scrape needs
``Authorization: Bearer <token>``; otherwise it is open.
"""

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from .auth import BearerTokens
from .endpoint import Boundary, Call, Endpoint, Reply


def metrics_endpoint(registry, boundary: Boundary, *, tokens=()) -> Endpoint:
    def metrics(call: Call) -> Reply:
        return Reply(200, raw=generate_latest(registry),
                     content_type=CONTENT_TYPE_PLAIN_0_0_4.encode("ascii"))
    return Endpoint("metrics", {"GET": metrics}, boundary,
                    auth=BearerTokens(tokens, challenge=True))
