"""What ``dmfdns status`` shows, from the running node (layer 3): ``GET /v1/status`` on the
node's HTTP API, answered from loopback or with the operator token (Knot's ``knotc status``
and ``zone-status`` in one JSON document).

The document: the node (id, version, ready, uptime), its zones (origin, the served SOA
serial, the file's serial, static records), the store (names, values, tombstones, map use,
generation), the listeners (kind and bound address), and the sync peers (lag, last success,
failing and why). The endpoint reads only what the node already keeps; it changes nothing.
"""

import ipaddress

from . import __version__
from .http.auth import bearer_token
from .http.endpoint import Call, Endpoint, HttpError, Reply


def status_endpoint(node, boundary) -> Endpoint:
    """``GET /v1/status``: the node's status to a loopback client or the operator."""
    def status(call: Call) -> Reply:
        return Reply(200, node_status(node, call.now))
    return Endpoint("status", {"GET": status}, boundary,
                    auth=lambda call: _loopback_or_operator(node, call))


def _loopback_or_operator(node, call: Call) -> None:
    """The TCP peer must be a loopback address (a proxy's X-Forwarded-For does not count),
    or the request must carry the operator token."""
    peer = getattr(call.request.getClientAddress(), "host", "") or ""
    try:
        loopback = ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if loopback or node.http.records.auth.is_operator(bearer_token(call.header(
            "Authorization"))):
        return None
    raise HttpError(401, "status is answered on loopback or with the operator token")


def node_status(node, now: float) -> dict:
    store = node.store.stats()
    generation = node.store.generation()
    return {
        "node": {"id": node.config.node.node_id, "version": __version__,
                 "ready": node.ready, "uptime_seconds": round(now - node.started_at, 1)
                 if node.started_at is not None else None},
        "zones": [_zone(zone, generation) for zone in node.zones],
        "store": {"names": store.names, "values": store.values,
                  "tombstones": store.tombstones, "map_used_bytes": store.map_used_bytes,
                  "map_size_bytes": store.map_size_bytes, "generation": generation},
        "listeners": [{"kind": l.kind, "address": str(l.bound or l.address)}
                      for l in node.listeners],
        "peers": [_peer(state, now) for state in _peer_states(node)],
    }


def _zone(zone, generation: int) -> dict:
    return {"origin": zone.origin, "serial": (zone.serial + generation) & 0xFFFFFFFF,
            "file_serial": zone.serial,
            "static_records": sum(len(rrset) for rrset in zone.rrsets.values())}


def _peer_states(node) -> list:
    anti_entropy = getattr(node.cluster, "anti_entropy", None)
    return list(anti_entropy.states.values()) if anti_entropy is not None else []


def _peer(state, now: float) -> dict:
    return {"id": state.peer.peer_id, "url": state.peer.url,
            "lag_seconds": round(state.lag_seconds, 1), "caught_up": state.caught_up,
            "last_success_ago_seconds": None if state.last_success is None
            else round(now - state.last_success, 1),
            "failing": state.failing, "last_error": state.last_error,
            "pulled": state.pulled, "applied": state.applied}
