"""``dmfdns manifest publish``: push a signed cluster manifest to a node.

The operator's rollout path, as in the reference (docs/compatibility.md §4.1): POST the signed
``v=dmp1;t=cluster;`` value to ``/v1/records/cluster.<base>`` of one node with the operator
token; the node verifies it against its pinned operator key before storing it, and the
cluster picks it up by gossip. The TTL defaults to the manifest's remaining life, capped at
the node's one-day TTL limit. The POST goes through the one outbound client, so an
``https://`` node is verified (the system trust store, or ``--ca-file``) and a refusal
names its cause.
"""

import json
import pathlib
import sys
import urllib.parse

from ..client import runner
from ..outbound.client import HttpClient
from ..outbound.errors import OutboundError
from ..outbound.tls import TlsConfigError, TlsPolicy, TlsSettings
from ..proto import cluster_manifest, owners
from ..proto.admission import Limits
from . import CommandError
from .cluster import add_manifest_sign

TIMEOUT = 10.0
MAX_RESPONSE = 65536


def register(sub) -> None:
    manifest = sub.add_parser("manifest", help="cluster manifest operations")
    actions = manifest.add_subparsers(dest="manifest_command", metavar="ACTION")
    actions.required = True
    add_manifest_sign(actions)
    publish = actions.add_parser(
        "publish", help="POST a signed cluster manifest to a node's /v1/records")
    publish.add_argument("wire", metavar="FILE",
                         help="file holding the signed v=dmp1;t=cluster; value ('-': stdin)")
    publish.add_argument("--node", required=True, metavar="URL",
                         help="the node's HTTP API, e.g. http://127.0.0.1:8053")
    token = publish.add_mutually_exclusive_group(required=True)
    token.add_argument("--token-file", metavar="FILE",
                       help="file whose first line is the operator token")
    token.add_argument("--token", help="the operator token (visible in the process list; "
                                       "prefer --token-file)")
    publish.add_argument("--ca-file", metavar="FILE",
                         help="CA certificates (PEM) an https:// node is verified against "
                              "(default: the system trust store)")
    publish.add_argument("--ttl", type=int, metavar="SECONDS",
                         help="lifetime at the node (default: until the manifest expires, "
                              f"at most {Limits().max_ttl} s)")
    publish.set_defaults(handler=publish_manifest)


def publish_manifest(args, ctx) -> int:
    wire = _read_text(args.wire).strip()
    record = cluster_manifest.decode(wire)
    if record is None:
        raise CommandError(f"{args.wire}: not a signed v=dmp1;t=cluster; value")
    ttl = args.ttl if args.ttl is not None else min(int(record.exp - ctx.now),
                                                    Limits().max_ttl)
    if ttl < 1:
        raise CommandError(f"{args.wire}: the manifest expired (exp {record.exp})")
    token = args.token if args.token is not None else _first_line(args.token_file)
    name = owners.cluster(record.cluster_name)
    check_node_url(args.node)
    status, body = post_record(ctx.get_reactor(), args.node, name,
                               {"value": wire, "ttl": ttl}, token, ca_file=args.ca_file)
    if status != 201:
        raise CommandError(f"{args.node} refused the manifest: HTTP {status} "
                           f"{_error_text(body)}")
    print(f"published cluster manifest seq {record.seq} for {record.cluster_name} "
          f"({len(record.nodes)} nodes) at {name}, ttl {ttl}s", file=ctx.stdout)
    return 0


def check_node_url(base_url: str) -> None:
    url = urllib.parse.urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise CommandError(f"--node must be an http:// or https:// URL, got {base_url!r}")


def post_record(reactor, base_url: str, name: str, payload: dict, token: str, *,
                ca_file=None) -> tuple[int, bytes]:
    """POST ``payload`` to ``<base_url>/v1/records/<name>`` through the outbound client
    (an ``https://`` node verified against ``ca_file`` or the system store):
    (status, body)."""
    check_node_url(base_url)
    try:
        tls = TlsPolicy(TlsSettings(ca_file=ca_file))
    except TlsConfigError as exc:
        raise CommandError(f"--ca-file: {exc}") from None
    target = base_url.rstrip("/") + "/v1/records/" + urllib.parse.quote(name, safe="")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def job(reactor):
        client = HttpClient(reactor, timeout=TIMEOUT, max_bytes=MAX_RESPONSE, tls=tls,
                            max_per_origin=1)
        try:
            return await client.request("POST", target, headers,
                                        json.dumps(payload).encode())
        finally:
            await client.close()
    try:
        response = runner.run(reactor, job)
    except OutboundError as exc:
        raise CommandError(f"cannot reach {base_url}: {exc}") from None
    except runner.Interrupted:
        raise CommandError("interrupted") from None
    return response.status, response.body


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")


def _read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return pathlib.Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: cannot read: {getattr(exc, 'strerror', exc)}") from None


def _first_line(path: str) -> str:
    lines = _read_text(path).splitlines()
    if not lines or not lines[0].strip():
        raise CommandError(f"{path}: no token on the first line")
    return lines[0].strip()
