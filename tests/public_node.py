"""``node/public/``: the shipped public-node example, and copies of it on free ports.

The committed ``node/public/node.toml`` listens on 127.0.0.1:5353 and :8053; tests run it
as a real node on free ports by rewriting only the listen addresses and the data
directory (everything else, registration and UPDATE included, is the file as shipped).
"""

import pathlib
import re
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
PUBLIC = ROOT / "node" / "public"
CONFIG = PUBLIC / "node.toml"
TOKEN_FILE = PUBLIC / "operator.token"


def operator_token() -> str:
    return TOKEN_FILE.read_text().splitlines()[0].strip()


def public_copy(directory: pathlib.Path, *, dns_port: int, http_port: int,
                host: str = "127.0.0.1", https_port: int = 0,
                dot_port: int = 0, node_id: str = "public1") -> pathlib.Path:
    """A copy of the public example in ``directory`` (zone and TLS paths absolute, token
    copied) listening on ``host`` at the given ports (HTTPS and DoT: free ones unless
    given), with its data in ``directory/data``."""
    text = CONFIG.read_text()
    text = text.replace('"../../zones/mesh.test.zone"',
                        f'"{ROOT / "zones" / "mesh.test.zone"}"')
    text = re.sub(r'listen = \["127\.0\.0\.1:5353"\]', f'listen = ["{host}:{dns_port}"]', text)
    text = re.sub(r'listen = \["127\.0\.0\.1:8053"\]', f'listen = ["{host}:{http_port}"]', text)
    text = text.replace('tls_listen = ["127.0.0.1:8443"]', f'tls_listen = ["{host}:{https_port}"]')
    text = text.replace('tls_listen = ["127.0.0.1:8853"]', f'tls_listen = ["{host}:{dot_port}"]')
    text = text.replace('"tls/node.', f'"{PUBLIC / "tls"}/node.')
    text = text.replace('tsig_key_file = "xfr.tsig"', f'tsig_key_file = "{PUBLIC / "xfr.tsig"}"')
    text = text.replace('data_dir = "dmfdns-public-data"', f'data_dir = "{directory / "data"}"')
    text = text.replace('node_id = "public1"', f'node_id = "{node_id}"')
    assert f"{host}:{dns_port}" in text and f"{host}:{http_port}" in text, "layout changed"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(TOKEN_FILE, directory / "operator.token")
    path = directory / "node.toml"
    path.write_text(text)
    return path


# --- a running public node ------------------------------------------------------------------

class PublicNode:
    """``dmfdns serve`` of a ``public_copy`` in ``directory`` on free ports (a subprocess);
    ``extra`` is TOML appended to the copy (e.g. a ``[cluster]`` section)."""

    def __init__(self, directory: pathlib.Path, extra: str = "", node_id: str = "public1"):
        from node_support import free_port
        self.dir = directory
        self.dns_port, self.http_port = free_port(), free_port()
        self.https_port, self.dot_port = free_port(), free_port()
        self.config = public_copy(directory, dns_port=self.dns_port, http_port=self.http_port,
                                  https_port=self.https_port, dot_port=self.dot_port,
                                  node_id=node_id)
        self.add_config(extra)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.process = None

    def add_config(self, extra: str) -> None:
        """Append TOML (a table such as ``[cluster]``) to the copy before it starts."""
        if extra:
            self.config.write_text(self.config.read_text() + "\n" + extra + "\n")

    def start(self) -> "PublicNode":
        import subprocess
        import sys
        import time
        from node_support import http_call
        log = open(self.dir / "node.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "dmfdns", "serve", "--config",
                                         str(self.config)], cwd=self.dir, stdout=log,
                                        stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.dir / "node.log").read_text()
            try:
                if http_call(self.http_port, "GET", "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"node did not start: {(self.dir / 'node.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def metric(self, name: str, labels: dict | None = None) -> float:
        from node_support import http_call
        from prometheus_client.parser import text_string_to_metric_families
        status, _, body = http_call(self.http_port, "GET", "/metrics",
                                    headers={"Authorization": f"Bearer {operator_token()}"})
        assert status == 200
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in (labels or {}).items()):
                    return sample.value
        return 0.0


def register(http_port: int, signer, subject: str, *, tsig: bool = False,
             x25519_private=None) -> dict:
    """Register ``subject`` with ``signer`` (a ``dmfdns.proto.signing.Signer``) at the node;
    the JSON reply of ``/confirm`` or ``/tsig-confirm``."""
    import hashlib
    import hmac
    import json
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from node_support import http_call
    from dmfdns.proto import registration
    status, _, body = http_call(http_port, "GET", "/v1/registration/challenge")
    assert status == 200, body
    issued = json.loads(body)
    challenge = bytes.fromhex(issued["challenge"])
    payload = registration.signed_payload(challenge, subject, issued["node"])
    request = {"subject": subject, "ed25519_spk": signer.public_key.hex(),
               "challenge": issued["challenge"], "signature": signer.sign(payload).hex()}
    if x25519_private is not None:
        public = x25519_private.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw)
        shared = x25519_private.exchange(X25519PublicKey.from_public_bytes(
            bytes.fromhex(issued["server_x25519_pub"])))
        request["x25519_pub"] = public.hex()
        request["x25519_pop"] = hmac.new(shared, challenge + subject.encode() + public,
                                         hashlib.sha256).hexdigest()
    path = "/v1/registration/tsig-confirm" if tsig else "/v1/registration/confirm"
    status, _, body = http_call(http_port, "POST", path, request)
    assert status == 200, body
    return json.loads(body)
