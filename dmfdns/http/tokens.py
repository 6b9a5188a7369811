"""Per-user bearer tokens for ``multi-tenant`` write auth, kept hashed in the data directory.

A token is ``dmp_v1_`` + 52 base32 characters (32 random bytes), the reference node's format
(dmp-node.md section 2.2), shown once when issued. Only its SHA-256 is stored, in
``<data_dir>/tokens.json`` (mode 0600, replaced atomically), so the file leaks no usable
secret. The HTTP node re-reads the file when it changes on disk, so ``dmfdns token issue`` and
``revoke`` take effect on a running node without a restart.
"""

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import secrets
from dataclasses import asdict, dataclass, replace

from twisted.logger import Logger

TOKEN_PREFIX = "dmp_v1_"
TOKEN_FILE_NAME = "tokens.json"
FILE_VERSION = 1
DEFAULT_RATE = 10.0
DEFAULT_BURST = 50
MAX_SUBJECT = 253


class TokenFileError(Exception):
    """The tokens file cannot be read or written; the message is one line."""


@dataclass(frozen=True)
class TokenRecord:
    """One issued token. Times are unix seconds; ``expires_at`` 0 means never."""

    hash: str
    subject: str
    issued_at: float
    expires_at: float = 0
    revoked_at: float | None = None
    note: str = ""
    rate_per_sec: float = DEFAULT_RATE
    rate_burst: int = DEFAULT_BURST

    def live(self, now: float) -> bool:
        return self.revoked_at is None and (not self.expires_at or now < self.expires_at)


def new_token() -> str:
    raw = base64.b32encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return TOKEN_PREFIX + raw


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenFile:
    """The tokens of one data directory."""

    log = Logger(namespace="dmfdns.http")

    def __init__(self, data_dir):
        self.path = pathlib.Path(data_dir) / TOKEN_FILE_NAME
        self._loaded_key = None
        self._error: TokenFileError | None = None
        self._by_hash: dict[str, TokenRecord] = {}

    # --- reading (the HTTP node) --------------------------------------------------------

    def lookup(self, token: str) -> TokenRecord | None:
        """The record of ``token`` (live or not), re-reading the file if it changed."""
        self._refresh()
        return self._by_hash.get(token_hash(token))

    def records(self) -> list[TokenRecord]:
        self._refresh()
        return list(self._by_hash.values())

    def _refresh(self) -> None:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            self._loaded_key, self._by_hash = None, {}
            return
        except OSError as exc:
            raise TokenFileError(f"{self.path}: cannot read: {exc.strerror}") from None
        key = (status.st_mtime_ns, status.st_size, status.st_ino)
        if key != self._loaded_key:
            # A bad file fails closed (no user token is valid) until it is fixed; it is
            # read and logged once per change, not once per request.
            self._loaded_key, self._by_hash, self._error = key, {}, None
            try:
                self._by_hash = {record.hash: record for record in self._read()}
            except TokenFileError as exc:
                self._error = exc
                self.log.error("{error}; per-user tokens are refused until it is fixed",
                               error=str(exc))
        if self._error is not None:
            raise self._error

    def _read(self) -> list[TokenRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != FILE_VERSION:
                raise ValueError(f"unsupported version {data.get('version')!r}")
            return [TokenRecord(**item) for item in data["tokens"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TokenFileError(f"{self.path}: not a valid tokens file: {exc}") from None

    # --- writing (the CLI) --------------------------------------------------------------

    def issue(self, subject: str, *, now: float, expires_at: float = 0, note: str = "",
              rate_per_sec: float = DEFAULT_RATE, rate_burst: int = DEFAULT_BURST) -> str:
        """Store a new token for ``subject`` and return it (the only time it is visible)."""
        subject = subject.strip()
        if not subject or len(subject) > MAX_SUBJECT or not subject.isprintable():
            raise TokenFileError("a subject is 1..253 printable characters, e.g. alice@mesh.test")
        token = new_token()
        record = TokenRecord(token_hash(token), subject, now, expires_at, None, note,
                             rate_per_sec, rate_burst)
        with self._locked():
            self._write(self._read() + [record])
        return token

    def revoke(self, token_or_hash_prefix: str, *, now: float) -> list[TokenRecord]:
        """Revoke the token given in full, or every token whose hash starts with the given
        hex prefix (at least 8 characters); the records revoked."""
        wanted = token_or_hash_prefix.strip()
        if wanted.startswith(TOKEN_PREFIX):
            match = lambda r: r.hash == token_hash(wanted)  # noqa: E731
        elif len(wanted) >= 8 and all(c in "0123456789abcdef" for c in wanted.lower()):
            match = lambda r: r.hash.startswith(wanted.lower())  # noqa: E731
        else:
            raise TokenFileError("give the token itself or at least 8 hex digits of its hash")
        with self._locked():
            records = self._read()
            revoked = [r for r in records if match(r) and r.revoked_at is None]
            if revoked:
                self._write([replace(r, revoked_at=now) if r in revoked else r
                             for r in records])
        return revoked

    @contextlib.contextmanager
    def _locked(self):
        """Serialise read-modify-write between CLI processes (an advisory lock file)."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock_path, "a")
        except OSError as exc:
            raise TokenFileError(f"{lock_path}: cannot open: {exc.strerror}") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _write(self, records: list[TokenRecord]) -> None:
        data = {"version": FILE_VERSION, "tokens": [asdict(r) for r in records]}
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            raise TokenFileError(f"{self.path}: cannot write: {exc.strerror}") from None
