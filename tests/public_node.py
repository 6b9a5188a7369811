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
                host: str = "127.0.0.1") -> pathlib.Path:
    """A copy of the public example in ``directory`` (zone path absolute, token copied)
    listening on ``host`` at the given ports, with its data in ``directory/data``."""
    text = CONFIG.read_text()
    text = text.replace('"../../zones/mesh.test.zone"',
                        f'"{ROOT / "zones" / "mesh.test.zone"}"')
    text = re.sub(r'listen = \["127\.0\.0\.1:5353"\]', f'listen = ["{host}:{dns_port}"]', text)
    text = re.sub(r'listen = \["127\.0\.0\.1:8053"\]', f'listen = ["{host}:{http_port}"]', text)
    text = text.replace('data_dir = "dmfdns-public-data"', f'data_dir = "{directory / "data"}"')
    assert f"{host}:{dns_port}" in text and f"{host}:{http_port}" in text, "layout changed"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(TOKEN_FILE, directory / "operator.token")
    path = directory / "node.toml"
    path.write_text(text)
    return path
