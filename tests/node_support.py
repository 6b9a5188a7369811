"""Real nodes for integration tests: free loopback ports, a node config on loopback, nodes
started in this process on the global reactor, their bound ports, and a blocking HTTP call.

A node started here answers from this process's reactor, so a blocking call to it
(``http_call``, a dnslib query) must run in a thread (``threads.deferToThread``).
"""

import http.client
import json
import pathlib
import socket

from twisted.internet import reactor

from dmfdns.config import defaults_dir, parse_config
from dmfdns.node import make_service

TIMEOUT = 10.0
ANY_PORT = "127.0.0.1:0"


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (checked, then released)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def node_config(base: pathlib.Path, data_dir: pathlib.Path, *, node_id: str | None = None,
                zones=None, dns: str = ANY_PORT, http: str = ANY_PORT,
                http_options: dict | None = None, cluster: dict | None = None,
                dns_options: dict | None = None, extra: str = ""):
    """A parsed config for one node listening on loopback, with a 64 MiB map.

    ``http=None`` gives no plain HTTP listener. ``zones`` defaults to the packaged
    ``mesh.test`` zone; ``http_options`` and
    ``dns_options`` are more keys of ``[http]`` and ``[dns]``; ``cluster`` (when given)
    becomes the ``[cluster]`` table; ``extra`` is TOML appended as written.
    """
    zones = [defaults_dir() / "mesh.test.zone"] if zones is None else zones
    lines = [f"zones = {json.dumps([pathlib.Path(z).as_posix() for z in zones])}", "[node]"]
    if node_id is not None:
        lines.append(f"node_id = {json.dumps(node_id)}")
    lines += [f"data_dir = {json.dumps(pathlib.Path(data_dir).as_posix())}",
              "[store]", 'map_size = "64MiB"',
              "[dns]", f"listen = [{json.dumps(dns)}]", *_keys(dns_options or {}),
              "[http]", f"listen = [{json.dumps(http) if http else ''}]",
              *_keys(http_options or {})]
    if cluster is not None:
        lines += ["[cluster]", *_keys(cluster)]
    return parse_config("\n".join(lines) + "\n" + extra, base=base, cwd=base)


def _keys(table: dict) -> list[str]:
    # JSON strings, numbers, booleans and lists of them are valid TOML values; a dict
    # becomes an inline table.
    return [f"{key} = {_toml(value)}" for key, value in table.items()]


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) \
            + " }"
    return json.dumps(value)


def start_node(config):
    """``make_service`` on the global reactor, started; stop it with ``stopService()``."""
    node = make_service(config, reactor)
    node.startService()
    return node


def http_port(node, kind: str = "http") -> int:
    """The bound port of the node's one ``kind`` listener (``http``, ``https``, ``dot``)."""
    (listener,) = [listener for listener in node.listeners if listener.kind == kind]
    return listener.bound.port


def dns_port(node) -> int:
    return node.dns_addresses("udp")[0].port


def http_call(port: int, method: str, path: str, body=None, headers=None):
    """(status, headers, body) of one blocking request to 127.0.0.1:``port``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
