"""A user's directory (``$DMFDNS_HOME``): settings in clear, secrets sealed by the passphrase.

Two files, both mode 0600 in a 0700 directory:

* ``client.json`` -- settings that are not secret: the username, the zone, where the nodes
  and resolvers are, the two random 32-byte salts and the public keys (so ``identity show``
  can say who this is before asking for the passphrase).
* ``state.enc`` -- everything secret or private, as one JSON document sealed with
  ChaCha20-Poly1305 (RFC 8439) under ``Argon2id(passphrase, state_salt)`` (RFC 9106, the
  protocol's cost parameters, docs/wire-format.md §2.1): the identity's X25519 private key
  and the ones it replaced, prekey private keys, the replay cache, contacts with their pins
  and blocks, and the intro queue.

The identity key itself comes from ``Argon2id(passphrase, kdf_salt)`` exactly as the
reference derives it, so the same passphrase and salt give the same identity in ``dnsmesh``.
The state key uses a *different* salt: knowing an identity key (say, one retired after a
compromise) does not open the state. Every save writes a fresh random nonce.

A command holds ``lock()`` (an ``flock`` on ``state.lock``) from load to save, so a
``recv --watch`` tick and a ``send`` never lose each other's updates.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import secrets
from dataclasses import asdict, dataclass, field, fields

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from ..proto import keys as proto_keys
from ..proto import names

PROFILE_FILE = "client.json"
STATE_FILE = "state.enc"
LOCK_FILE = "state.lock"
STATE_MAGIC = b"DMFS1"
SALT_LEN = 32
NONCE_LEN = 12
PROFILE_VERSION = 1
DEFAULT_MESSAGE_TTL = 300
DEFAULT_MAX_RECORD_BYTES = 2048   # the reference node's value cap (docs/compatibility.md §2.1)


class StateError(Exception):
    """The user directory is missing, unreadable or inconsistent (one line for the CLI)."""


class WrongPassphrase(StateError):
    """The passphrase does not open ``state.enc``."""


# --- settings (client.json) -------------------------------------------------------------

@dataclass
class NodeEndpoint:
    """One node of the user's cluster: where to write (HTTP) and read (DNS ``host:port``)."""

    http: str
    dns: str | None = None
    node_id: str = ""


@dataclass
class Profile:
    username: str
    zone: str
    kdf_salt: bytes
    state_salt: bytes
    x25519_public: bytes
    ed25519_public: bytes
    identity_domain: str | None = None   # set: the zone-anchored form dmp.<identity_domain>
    nodes: list = field(default_factory=list)          # of NodeEndpoint
    resolvers: list = field(default_factory=list)      # "host:port" of recursive resolvers
    token: str | None = field(default=None, repr=False)  # bearer token for node writes
    message_ttl: int = DEFAULT_MESSAGE_TTL
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    cluster_base: str | None = None        # pinned cluster: cluster.<base> ...
    cluster_operator: bytes | None = None  # ... signed by this operator key
    cluster_seq: int = 0                   # highest manifest seq installed (rollback guard)
    # A TSIG key from a public node's registration: writes go as signed DNS UPDATEs to
    # tsig_server ("host:port") for tsig_zone instead of the nodes' HTTP APIs.
    tsig_key_name: str | None = None
    tsig_secret: str | None = field(default=None, repr=False)    # hex
    tsig_algorithm: str = "hmac-sha256"
    tsig_server: str | None = None
    tsig_zone: str | None = None
    claims: bool = True                    # publish and poll first-contact claims

    @property
    def home_domain(self) -> str:
        """The host of this user's address: the identity domain, else the zone."""
        return self.identity_domain or self.zone

    @property
    def address(self) -> str:
        return f"{self.username}@{self.home_domain}"

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("kdf_salt", "state_salt", "x25519_public", "ed25519_public",
                    "cluster_operator"):
            data[key] = None if data[key] is None else data[key].hex()
        data["version"] = PROFILE_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Profile":
        data = dict(data)
        if data.pop("version", None) != PROFILE_VERSION:
            raise StateError("client.json has an unknown version")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise StateError(f"client.json has unknown keys: {', '.join(sorted(unknown))}")
        for key in ("kdf_salt", "state_salt", "x25519_public", "ed25519_public",
                    "cluster_operator"):
            if data.get(key) is not None:
                data[key] = bytes.fromhex(data[key])
        data["nodes"] = [NodeEndpoint(**n) for n in data.get("nodes", [])]
        return cls(**data)


# --- secrets (state.enc) ----------------------------------------------------------------

@dataclass
class Contact:
    """A pinned peer: ``user@domain`` with the keys of its identity record when fetched."""

    user: str
    domain: str
    x25519: bytes
    ed25519: bytes
    versions: tuple = (1,)
    blocked: bool = False
    revoked: bool = False       # its pinned key published a revocation: refuse it
    added: int = 0

    @property
    def address(self) -> str:
        return f"{self.user}@{self.domain}"


@dataclass
class PrekeySecret:
    prekey_id: int
    private: bytes
    public: bytes
    exp: int
    wire: str


@dataclass
class ReplayEntry:
    sender_spk: bytes
    msg_id: bytes
    exp: int


@dataclass
class IntroMessage:
    """A message from a sender nobody pinned, held apart from the inbox."""

    sender_spk: bytes
    sender_x25519: bytes | None
    sender: str | None          # the DMPv2 ``from``, only when verified
    msg_id: bytes
    ts: int
    zone: str
    body: bytes


@dataclass
class RetiredKey:
    """An identity key replaced by rotation, kept to open messages still addressed to it."""

    x25519_private: bytes
    retired: int


@dataclass
class Secrets:
    x25519_private: bytes
    retired_keys: list = field(default_factory=list)     # of RetiredKey
    revoked: bool = False
    prekeys: list = field(default_factory=list)          # of PrekeySecret
    replay: list = field(default_factory=list)           # of ReplayEntry
    contacts: list = field(default_factory=list)         # of Contact
    blocked_keys: list = field(default_factory=list)     # of Ed25519 keys (bytes)
    intro: list = field(default_factory=list)            # of IntroMessage
    partials: dict = field(default_factory=dict)         # multi-part groups, see receive.py
    published: list = field(default_factory=list)        # our rotation/revocation records
    spent_prekeys: dict = field(default_factory=dict)    # "<spk hex>:<id>" -> exp, see send

    @property
    def keys(self) -> proto_keys.UserKeys:
        return proto_keys.UserKeys.from_x25519_private(self.x25519_private)

    def contact(self, address: str) -> Contact | None:
        """The contact ``user@domain`` (the domain compared case-insensitively)."""
        user, _, domain = address.partition("@")
        for contact in self.contacts:
            if contact.user == user and contact.domain.lower() == names.folded(domain):
                return contact
        return None


_NESTED = {"retired_keys": RetiredKey, "prekeys": PrekeySecret, "replay": ReplayEntry,
           "contacts": Contact, "intro": IntroMessage}


def _encode(value):
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value):
    if isinstance(value, dict):
        if set(value) == {"hex"}:
            return bytes.fromhex(value["hex"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def secrets_to_json(state: Secrets) -> bytes:
    return json.dumps(_encode(asdict(state)), separators=(",", ":")).encode("utf-8")


def secrets_from_json(raw: bytes) -> Secrets:
    data = _decode(json.loads(raw.decode("utf-8")))
    for key, cls in _NESTED.items():
        data[key] = [cls(**item) for item in data.get(key, [])]
    for contact in data["contacts"]:
        contact.versions = tuple(contact.versions)
    return Secrets(**data)


# --- sealing ----------------------------------------------------------------------------

def state_key(passphrase: str, state_salt: bytes) -> bytes:
    """Argon2id with the protocol's cost parameters (docs/wire-format.md §2.1)."""
    kdf = Argon2id(salt=bytes(state_salt), length=32, iterations=proto_keys.ARGON2_ITERATIONS,
                   lanes=proto_keys.ARGON2_LANES, memory_cost=proto_keys.ARGON2_MEMORY_KIB)
    return kdf.derive(passphrase.encode("utf-8"))


def seal_state(state: Secrets, key: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_LEN)
    return STATE_MAGIC + nonce + ChaCha20Poly1305(key).encrypt(nonce, secrets_to_json(state),
                                                                STATE_MAGIC)


def open_state(blob: bytes, key: bytes) -> Secrets:
    if not blob.startswith(STATE_MAGIC) or len(blob) < len(STATE_MAGIC) + NONCE_LEN + 16:
        raise StateError("state.enc is not a dmfdns state file")
    nonce = blob[len(STATE_MAGIC):len(STATE_MAGIC) + NONCE_LEN]
    try:
        raw = ChaCha20Poly1305(key).decrypt(nonce, blob[len(STATE_MAGIC) + NONCE_LEN:],
                                            STATE_MAGIC)
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase (state.enc does not open)") from None
    try:
        return secrets_from_json(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise StateError(f"state.enc is damaged: {exc}") from None


# --- the directory ----------------------------------------------------------------------

class UserDir:
    """The files of one user; every write is atomic (temp file, fsync, rename)."""

    def __init__(self, home):
        self.home = pathlib.Path(home)

    def exists(self) -> bool:
        return (self.home / PROFILE_FILE).exists()

    def create(self, profile: Profile, state: Secrets, key: bytes) -> None:
        if self.exists():
            raise StateError(f"{self.home} already holds an identity; refusing to overwrite")
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create {self.home}: {exc.strerror}") from None
        self.save_state(state, key)
        self.save_profile(profile)

    def load_profile(self) -> Profile:
        path = self.home / PROFILE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StateError(f"no identity in {self.home}; run 'dmfdns identity init' "
                             "first") from None
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read {path}: {exc}") from None
        try:
            return Profile.from_json(data)
        except (TypeError, ValueError) as exc:
            raise StateError(f"{path} is damaged: {exc}") from None

    def save_profile(self, profile: Profile) -> None:
        text = json.dumps(profile.to_json(), indent=2, sort_keys=True) + "\n"
        self._write(PROFILE_FILE, text.encode("utf-8"))

    def load_state(self, key: bytes) -> Secrets:
        path = self.home / STATE_FILE
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from None
        return open_state(blob, key)

    def save_state(self, state: Secrets, key: bytes) -> None:
        self._write(STATE_FILE, seal_state(state, key))

    @contextlib.contextmanager
    def lock(self):
        """Exclusive use of the state for the duration of the block (waits for others)."""
        try:
            handle = open(self.home / LOCK_FILE, "a")
        except OSError as exc:
            raise StateError(f"cannot lock {self.home}: {exc.strerror}") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, name: str, data: bytes) -> None:
        path = self.home / name
        temp = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StateError(f"cannot write {path}: {exc.strerror}") from None


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_LEN)
