"""``/stats``: the reference's JSON counts, ``{"records": <int or null>}``, plus ``names``.

``records`` counts stored values; expired ones count until the sweeper removes them (the
reference counts live rows; the difference lasts one sweep interval at most). A store that
cannot answer gives ``null``s, as the reference does, never an error.
"""

from .endpoint import Boundary, Call, Endpoint, Reply


def stats_endpoint(store, boundary: Boundary) -> Endpoint:
    def stats(call: Call) -> Reply:
        try:
            counts = store.stats()
        except Exception:
            return Reply(200, {"records": None, "names": None})
        return Reply(200, {"records": counts.values, "names": counts.names})
    return Endpoint("stats", {"GET": stats}, boundary)
