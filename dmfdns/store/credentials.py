"""Per-user credentials in the store's ``auth`` table: bearer tokens, TSIG keys, an audit
trail (docs/compatibility.md §2.4 and 2.2).

* **tokens**: ``dmp_v1_`` + 52 base32 characters (32 random bytes), the reference's format;
  only the SHA-256 is kept. Issued by the operator (``dmfdns token issue``) or by
  self-service registration, which records the Ed25519 key that registered.
* **TSIG keys**: minted at registration with the reference's key name and scope, or
  listed and revoked by the operator (``dmfdns tsig list|revoke``).
* **audit**: one entry per issue, registration, rotation and revocation, bounded to the
  last ``audit_limit`` entries (the reference's grows forever and logs every request).

Everything lives in LMDB, so a running node and the CLI (another process) share it; each
change bumps a serial in the same transaction. Readers keep every credential in memory
and re-read them only when the serial moved: a lookup is one small read plus a dict
access, never a rebuild (the reference rebuilds its keyring on every DNS packet, its
§10 item 2). ``dmfdns token`` and ``dmfdns tsig`` therefore take effect on a running node
at its next lookup.

Registration's anti-takeover rule: a subject held by a live credential registered with
one Ed25519 key cannot be registered with another (``SubjectTaken``, HTTP 409); the same
key re-registering supersedes its earlier self-service tokens.
"""

import base64
import hashlib
import json
import pathlib
import secrets
import struct
from dataclasses import asdict, dataclass, field, replace

from ..dns import tsig
from ..proto import authority
from .api import StoreError

TOKEN_PREFIX = "dmp_v1_"
DEFAULT_RATE = 10.0
DEFAULT_BURST = 50
MAX_SUBJECT = 253
AUDIT_LIMIT = 10_000
TOKEN_FILE = "tokens.json"         # where dmfdns kept tokens before they moved to LMDB
OPERATOR = "operator"
REGISTRATION = "registration"

_TOKEN = b"token:"
_TSIG = b"tsig:"
_AUDIT = b"audit:"
_SERIAL = b"serial"
_AUDIT_SPAN = b"audit-span"          # first and next audit sequence numbers
_SPAN = struct.Struct(">QQ")


class CredentialError(Exception):
    """A credential change that cannot be made; the message is one line."""


class SubjectTaken(CredentialError):
    """The subject is held by a live credential registered with another key."""


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
    registered_spk: str = ""          # hex Ed25519 key of a self-service registration
    issuer: str = OPERATOR

    def live(self, now: float) -> bool:
        return self.revoked_at is None and (not self.expires_at or now < self.expires_at)


@dataclass(frozen=True)
class TsigKeyRecord:
    """One TSIG key (docs/compatibility.md §2.4); ``name`` canonical, without trailing dot."""

    name: str
    algorithm: str
    secret_hex: str = field(repr=False)
    suffixes: tuple = ()
    created_at: float = 0
    expires_at: float = 0
    revoked_at: float | None = None
    subject: str = ""
    registered_spk: str = ""
    registered_x25519_pub: str = ""

    def live(self, now: float) -> bool:
        return self.revoked_at is None and (not self.expires_at or now < self.expires_at)


@dataclass(frozen=True)
class AuditEntry:
    ts: float
    event: str
    subject: str
    detail: str = ""
    remote: str = ""


def new_token() -> str:
    raw = base64.b32encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return TOKEN_PREFIX + raw


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Credentials:
    """The credentials of one store, cached in memory (see the module docstring)."""

    def __init__(self, store, *, audit_limit: int = AUDIT_LIMIT):
        self.store = store
        self.audit_limit = audit_limit
        self._serial: bytes | None = b"unread"
        self._tokens: dict[str, TokenRecord] = {}
        self._keys: dict[str, TsigKeyRecord] = {}
        self._tsig: dict[str, tsig.TsigKey] = {}
        self.reloads = 0

    # --- reading --------------------------------------------------------------------------

    def _fresh(self) -> None:
        serial = self.store.auth_get(_SERIAL)
        if serial == self._serial:
            return
        tokens = [TokenRecord(**_loads(raw)) for _, raw in self.store.auth_scan(_TOKEN)]
        keys = [_key_record(_loads(raw)) for _, raw in self.store.auth_scan(_TSIG)]
        self._tokens = {record.hash: record for record in tokens}
        self._keys = {record.name: record for record in keys}
        self._tsig = {record.name: _tsig_key(record) for record in keys}
        self._serial = serial
        self.reloads += 1

    def lookup_token(self, token: str) -> TokenRecord | None:
        """The record of ``token`` (live or not)."""
        self._fresh()
        return self._tokens.get(token_hash(token))

    def tokens(self) -> list[TokenRecord]:
        self._fresh()
        return sorted(self._tokens.values(), key=lambda r: (r.issued_at, r.hash))

    def tsig_keys(self) -> list[TsigKeyRecord]:
        self._fresh()
        return sorted(self._keys.values(), key=lambda r: (r.created_at, r.name))

    def tsig_key(self, name: str, now: float) -> tsig.TsigKey | None:
        """The live TSIG key called ``name`` (canonical), its scope attached as a
        ``authority.TsigScope``; None for an unknown, revoked or expired key."""
        self._fresh()
        record = self._keys.get(name)
        if record is None or not record.live(now):
            return None
        return self._tsig.get(name)

    def subject_live(self, subject: str, now: float) -> bool:
        """Whether ``subject`` holds a live credential (token or TSIG key)."""
        self._fresh()
        return any(r.subject == subject and r.live(now)
                   for r in (*self._tokens.values(), *self._keys.values()))

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        """The last ``limit`` audit entries, oldest first."""
        entries = self.store.auth_scan(_AUDIT)[-limit:]
        return [AuditEntry(**_loads(raw)) for _, raw in entries]

    # --- operator writes ------------------------------------------------------------------

    def issue_token(self, subject: str, *, now: float, expires_at: float = 0, note: str = "",
                    rate_per_sec: float = DEFAULT_RATE,
                    rate_burst: int = DEFAULT_BURST) -> str:
        """Store a new operator-issued token for ``subject`` and return it (the only time
        it is visible)."""
        subject = subject.strip()
        if not subject or len(subject) > MAX_SUBJECT or not subject.isprintable():
            raise CredentialError("a subject is 1..253 printable characters, "
                                  "e.g. alice@mesh.test")
        token = new_token()
        record = TokenRecord(token_hash(token), subject, now, expires_at, None, note,
                             rate_per_sec, rate_burst)
        self._commit(lambda reader: {_TOKEN + record.hash.encode(): _dumps(record)},
                     AuditEntry(now, "token-issued", subject, record.hash[:16]))
        return token

    def revoke_tokens(self, selector: str, *, now: float) -> list[TokenRecord]:
        """Revoke the token given in full, or every live token whose hash starts with the
        given hex prefix (at least 8 characters); the records revoked."""
        wanted = selector.strip()
        if wanted.startswith(TOKEN_PREFIX):
            match = lambda r: r.hash == token_hash(wanted)  # noqa: E731
        elif len(wanted) >= 8 and all(c in "0123456789abcdef" for c in wanted.lower()):
            match = lambda r: r.hash.startswith(wanted.lower())  # noqa: E731
        else:
            raise CredentialError("give the token itself or at least 8 hex digits of its hash")
        revoked = []

        def update(reader):
            found = [TokenRecord(**_loads(raw)) for _, raw in reader.auth_scan(_TOKEN)]
            revoked[:] = [r for r in found if match(r) and r.revoked_at is None]
            return {_TOKEN + r.hash.encode(): _dumps(replace(r, revoked_at=now))
                    for r in revoked}
        self._commit(update, AuditEntry(now, "token-revoked", "", selector[:16]))
        return revoked

    def revoke_tsig(self, name: str, *, now: float) -> list[TsigKeyRecord]:
        """Revoke the live TSIG key ``name`` (a trailing dot is allowed), or every live
        key of the subject ``name`` when it holds an ``@``; the records revoked."""
        wanted = name.strip().lower().rstrip(".")
        if not wanted:
            raise CredentialError("give a TSIG key name or a subject (user@domain)")
        revoked = []

        def update(reader):
            found = [_key_record(_loads(raw)) for _, raw in reader.auth_scan(_TSIG)]
            revoked[:] = [r for r in found if r.revoked_at is None
                          and (r.name == wanted or r.subject == wanted)]
            return {_TSIG + r.name.encode(): _dumps(replace(r, revoked_at=now))
                    for r in revoked}
        self._commit(update, AuditEntry(now, "tsig-revoked", "", wanted))
        return revoked

    # --- self-service registration ----------------------------------------------------------

    def register_token(self, subject: str, spk_hex: str, *, now: float, ttl: float,
                       rate_per_sec: float, rate_burst: int,
                       remote: str = "") -> tuple[str, TokenRecord]:
        """Supersede the subject's self-service tokens with a new one, unless another key
        holds the subject (``SubjectTaken``); atomic."""
        token = new_token()
        record = TokenRecord(token_hash(token), subject, now, now + ttl if ttl else 0, None,
                             "self-service registration", rate_per_sec, rate_burst,
                             spk_hex, REGISTRATION)

        def update(reader):
            _refuse_takeover(reader, subject, spk_hex, now)
            superseded = {}
            for _, raw in reader.auth_scan(_TOKEN):
                old = TokenRecord(**_loads(raw))
                if (old.subject == subject and old.issuer == REGISTRATION
                        and old.revoked_at is None):
                    superseded[_TOKEN + old.hash.encode()] = _dumps(replace(old, revoked_at=now))
            superseded[_TOKEN + record.hash.encode()] = _dumps(record)
            return superseded
        self._commit(update, AuditEntry(now, "registered", subject, record.hash[:16], remote))
        return token, record

    def mint_tsig(self, name: str, subject: str, spk_hex: str, *, suffixes, now: float,
                  ttl: float, x25519_hex: str = "", algorithm: str = "hmac-sha256",
                  remote: str = "") -> TsigKeyRecord:
        """A fresh secret for key ``name`` (replacing an earlier one of that name), unless
        another key holds the subject (``SubjectTaken``); atomic."""
        record = TsigKeyRecord(name, algorithm, secrets.token_bytes(32).hex(), tuple(suffixes),
                               now, now + ttl if ttl else 0, None, subject, spk_hex,
                               x25519_hex)
        _tsig_key(record)      # the name and algorithm must be usable

        def update(reader):
            _refuse_takeover(reader, subject, spk_hex, now)
            return {_TSIG + name.encode(): _dumps(record)}
        self._commit(update, AuditEntry(now, "tsig-minted", subject, name, remote))
        return record

    # --- the transaction ------------------------------------------------------------------

    def _commit(self, update, entry: AuditEntry) -> None:
        """Apply ``update``'s changes with the audit entry and a new serial, atomically."""
        def everything(reader):
            changes = dict(update(reader))
            changes.update(self._audit_changes(reader, entry))
            changes[_SERIAL] = secrets.token_bytes(8)
            return changes
        try:
            self.store.auth_write({}, everything)
        except StoreError as exc:
            raise CredentialError(f"credentials not saved: {exc}") from None

    def _audit_changes(self, reader, entry: AuditEntry) -> dict:
        raw = reader.auth_get(_AUDIT_SPAN)
        first, following = _SPAN.unpack(raw) if raw else (0, 0)
        changes = {_AUDIT + struct.pack(">Q", following): _dumps(entry)}
        following += 1
        while following - first > self.audit_limit:
            changes[_AUDIT + struct.pack(">Q", first)] = None
            first += 1
        changes[_AUDIT_SPAN] = _SPAN.pack(first, following)
        return changes


def import_token_file(credentials: "Credentials", data_dir, *, now: float) -> int:
    """Move the tokens of an older dmfdns's ``<data_dir>/tokens.json`` into the store
    (tokens already there are kept) and rename the file ``tokens.json.imported``; the number
    imported. No file: 0. A file that cannot be read is a CredentialError."""
    path = pathlib.Path(data_dir) / TOKEN_FILE
    if not path.exists():
        return 0
    try:
        records = [TokenRecord(**item) for item in json.loads(path.read_text("utf-8"))["tokens"]]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CredentialError(f"{path}: cannot import the tokens: {exc}") from None

    def update(reader):
        return {_TOKEN + r.hash.encode(): _dumps(r) for r in records
                if reader.auth_get(_TOKEN + r.hash.encode()) is None}
    credentials._commit(update, AuditEntry(now, "tokens-imported", "", str(path)))
    path.rename(path.with_name(TOKEN_FILE + ".imported"))
    return len(records)


def _refuse_takeover(reader, subject: str, spk_hex: str, now: float) -> None:
    """SubjectTaken when a live credential of ``subject`` was registered with another key
    (operator-issued tokens carry no key and never lock a subject)."""
    for prefix, build in ((_TOKEN, lambda d: TokenRecord(**d)), (_TSIG, _key_record)):
        for _, raw in reader.auth_scan(prefix):
            record = build(_loads(raw))
            if (record.subject == subject and record.registered_spk
                    and record.registered_spk != spk_hex and record.live(now)):
                raise SubjectTaken("subject already registered to a different key")


def _tsig_key(record: TsigKeyRecord) -> tsig.TsigKey:
    try:
        return tsig.TsigKey(record.name, record.algorithm, bytes.fromhex(record.secret_hex),
                            attached=authority.TsigScope(record.name, tuple(record.suffixes)))
    except ValueError as exc:
        raise CredentialError(f"unusable TSIG key {record.name!r}: {exc}") from None


def _key_record(data: dict) -> TsigKeyRecord:
    data["suffixes"] = tuple(data.get("suffixes", ()))
    return TsigKeyRecord(**data)


def _dumps(record) -> bytes:
    return json.dumps(asdict(record), sort_keys=True).encode("utf-8")


def _loads(raw: bytes) -> dict:
    try:
        data = json.loads(bytes(raw).decode("utf-8"))
    except ValueError:
        raise CredentialError("a credential in the store is not valid JSON") from None
    if not isinstance(data, dict):
        raise CredentialError("a credential in the store is not a JSON object")
    return data
