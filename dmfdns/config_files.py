"""The secrets and the manifest that the configuration names by file: each is the first
line of its file, read when the node is built (not when the configuration is parsed, so
``check-config`` on another machine does not need them) and named in the error.
"""

import pathlib
import re

from .config_sections import ClusterConfig, HttpConfig
from .config_values import ConfigError


def _first_line(path: pathlib.Path, what: str) -> str:
    """The stripped first line of ``path``; ``what`` (``"[cluster] sync_token_file"``)
    names the setting in the error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read: "
                          f"{getattr(exc, 'strerror', exc)}") from None
    text = lines[0].strip() if lines else ""
    if not text:
        raise ConfigError(f"{what} {path} is empty")
    return text


def read_sync_token(cluster: ClusterConfig) -> str:
    """The sync bearer token, from the config or the first line of its file ("" = none)."""
    if cluster.sync_token_file is None:
        return cluster.sync_token
    return _first_line(cluster.sync_token_file, "[cluster] sync_token_file")


def read_operator_key(cluster: ClusterConfig) -> bytes | None:
    """The pinned operator public key (32 bytes), or None when none is configured."""
    text = cluster.operator_key
    if cluster.operator_key_file is not None:
        text = _first_line(cluster.operator_key_file, "[cluster] operator_key_file")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raise ConfigError(f"[cluster] operator_key_file {cluster.operator_key_file}: "
                              "must hold 64 hex characters (a public key)")
    return bytes.fromhex(text) if text else None


def read_manifest_wire(cluster: ClusterConfig) -> str | None:
    """The signed manifest of ``manifest_file`` (its first line), or None."""
    if cluster.manifest_file is None:
        return None
    return _first_line(cluster.manifest_file, "[cluster] manifest_file")


def read_operator_token(http: HttpConfig) -> str:
    """The operator token, from the config or the first line of its token file."""
    if http.operator_token_file is None:
        return http.operator_token
    return _first_line(http.operator_token_file, "[http] operator_token_file")
