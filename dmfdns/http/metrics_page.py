"""``/metrics``: the Prometheus text exposition of the node's own registry.

prometheus-client's ``MetricsResource`` renders the global registry and is tied to the
global reactor, so this small endpoint renders the injected registry with
``generate_latest`` instead (DESIGN.md section 5). When tokens are configured (the metrics
token, and the operator token as the reference accepts), a scrape needs
``Authorization: Bearer <token>``; otherwise it is open.
"""

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from .auth import bearer_token, same_secret
from .endpoint import Boundary, Call, Endpoint, HttpError, Reply


def metrics_endpoint(registry, boundary: Boundary, *, tokens=()) -> Endpoint:
    accepted = tuple(t for t in tokens if t)

    def metrics(call: Call) -> Reply:
        if accepted:
            given = bearer_token(call.header("Authorization"))
            # Compare against every token so the time taken does not say which one matched.
            if sum(same_secret(given, token) for token in accepted) == 0:
                raise HttpError(401, "unauthorized",
                                headers=((b"WWW-Authenticate", b"Bearer"),))
        return Reply(200, raw=generate_latest(registry),
                     content_type=CONTENT_TYPE_PLAIN_0_0_4.encode("ascii"))
    return Endpoint("metrics", {"GET": metrics}, boundary)
