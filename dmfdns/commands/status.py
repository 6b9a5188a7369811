"""``dmfdns status``: what the running node says about itself (``GET /v1/status``, see
``dmfdns.node_status``), like ``knotc status`` and ``zone-status``.

The node's first ``[http] listen`` address is asked (a wildcard becomes loopback), with the
operator token when the configuration names one; without one the node answers loopback
clients only. ``--json`` prints the document as the node sent it.
"""

import http.client
import json

from ..config import ConfigError, read_operator_token
from . import CommandError
from .serve import load

TIMEOUT = 10.0


def register(sub) -> None:
    p = sub.add_parser(
        "status", help="ask the running node for its zones, serials, store, listeners and "
                       "peers",
        description="Ask the running node (GET /v1/status on its first [http] listen "
                    "address, with the operator token when one is configured) for its "
                    "zones and served serials, record counts and store usage, listeners, "
                    "and sync peers with their lag. Exit 1 when the node does not answer.")
    p.add_argument("--config", metavar="FILE",
                   help="the node's configuration (TOML); default: the embedded one")
    p.add_argument("--json", action="store_true", help="print the JSON document as sent")
    p.set_defaults(handler=status)


def status(args, ctx) -> int:
    config = load(args.config)
    if not config.http.listen:
        raise CommandError("the node has no [http] listen address to ask")
    try:
        token = read_operator_token(config.http)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    address = config.http.listen[0]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    document = fetch(host, address.port, token)
    if args.json:
        print(json.dumps(document, indent=2), file=ctx.stdout)
    else:
        for line in render(document):
            print(line, file=ctx.stdout)
    return 0


def fetch(host: str, port: int, token: str) -> dict:
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        connection.request("GET", "/v1/status", headers=headers)
        response = connection.getresponse()
        body = response.read()
    except OSError as exc:
        raise CommandError(f"no node answers on {where}: {exc.strerror or exc}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise CommandError(f"{where} answered {response.status}: "
                           f"{body.decode('utf-8', 'replace')[:200]}")
    try:
        return json.loads(body)
    except ValueError:
        raise CommandError(f"{where} did not answer with a status document") from None


def render(doc: dict) -> list[str]:
    node, store = doc["node"], doc["store"]
    used = store["map_used_bytes"] / store["map_size_bytes"] if store["map_size_bytes"] else 0
    lines = [f"node {node['id']} (dmfdns {node['version']}): "
             f"{'ready' if node['ready'] else 'NOT READY'}, up {node['uptime_seconds']} s",
             f"store: {store['values']} values at {store['names']} names, "
             f"{store['tombstones']} tombstones; map {store['map_used_bytes']} of "
             f"{store['map_size_bytes']} bytes ({used:.0%}); generation {store['generation']}",
             "zones:"]
    lines += [f"  {z['origin']}: serial {z['serial']} (file {z['file_serial']}), "
              f"{z['static_records']} static records" for z in doc["zones"]]
    lines.append("listeners:")
    lines += [f"  {l['kind']:6} {l['address']}" for l in doc["listeners"]]
    lines.append("peers:" if doc["peers"] else "peers: none")
    for peer in doc["peers"]:
        state = f"FAILING ({peer['last_error']})" if peer["failing"] else "ok"
        lines.append(f"  {peer['id']} {peer['url']}: lag {peer['lag_seconds']} s, last "
                     f"success {peer['last_success_ago_seconds']} s ago, {state}")
    return lines
