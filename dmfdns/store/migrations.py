"""The LMDB store's schema version and the ordered migrations between versions.

The version is ``store:schema`` in the meta table (ASCII decimal). A writable ``LmdbStore``
runs at open, in one write transaction, every migration whose ``version`` is above the
stored one, in order, then records the last version: a migration that fails leaves the
store as it was. A store with no version is a fresh one: it starts at ``BASE_VERSION`` (the
record tables that every version has) and takes the same path. A store whose version is
above ``CURRENT_VERSION`` was written by a newer dmfdns and is refused before anything is
written; a read-only handle refuses any version but the current one (it cannot migrate).

Each migration is one small function of a ``MigrationTables`` (what ``lmdb_store`` offers
inside the transaction). Adding one (docs/storage.md, "Schema versions"): append it here
with the next version, and add ``tests/fixtures/store-v<N>`` made by the code of version N
(``tests/fixtures/make_store_fixture.py``) so every older layout keeps being migrated.
"""

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from .api import StoreError
from .batch import SCHEMA as SCHEMA_KEY
BASE_VERSION = 1


class MigrationTables(Protocol):
    """The tables of the store inside the migration's write transaction (bytes keys)."""

    def create_table(self, name: str) -> None: ...
    def get(self, table: str, key: bytes) -> bytes | None: ...
    def put(self, table: str, key: bytes, value: bytes) -> None: ...
    def delete(self, table: str, key: bytes) -> None: ...
    def scan(self, table: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...


@dataclass(frozen=True)
class Migration:
    version: int                                  # the schema version it produces
    what: str                                     # one line for the operator's log
    apply: Callable[[MigrationTables], None]


class SchemaTooNew(StoreError):
    """The store was written by a newer dmfdns than this one."""


def _auth_table(tables: MigrationTables) -> None:
    # Credentials (user tokens, TSIG keys, the audit trail: store/credentials.py). Stores of
    # version 1 may already hold it (it was created on open for a while): creating an
    # existing table keeps its contents.
    tables.create_table("auth")


def _journal_table(tables: MigrationTables) -> None:
    # The zone-transfer journal (store/journal.py); empty is a valid journal: it reaches
    # back nowhere, so the first IXFR after the upgrade gets the full zone.
    tables.create_table("journal")


def _rrsig_table(tables: MigrationTables) -> None:
    # RRSIGs stored beside each name's blob (dns/rrsig_store.py); empty is valid: a name
    # without them is signed on the fly and the background re-signer fills the table.
    tables.create_table("rrsigs")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "auth table for tokens, TSIG keys and their audit trail", _auth_table),
    Migration(3, "journal table for IXFR differences", _journal_table),
    Migration(4, "rrsigs table for the RRSIGs stored with each signed name", _rrsig_table),
)
CURRENT_VERSION = MIGRATIONS[-1].version if MIGRATIONS else BASE_VERSION


def parse_version(raw: bytes | None) -> int | None:
    """The stored version (None: a fresh store); StoreError when unreadable."""
    if raw is None:
        return None
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise StoreError(f"store schema version {raw!r} is not a number") from None


def pending(found: int | None, where: str) -> tuple[Migration, ...]:
    """The migrations to run on a store at version ``found``, in order."""
    start = BASE_VERSION if found is None else found
    if start > CURRENT_VERSION:
        raise SchemaTooNew(
            f"the store at {where} has schema version {start}, newer than this dmfdns "
            f"knows (up to {CURRENT_VERSION}): it was written by a newer dmfdns; run that "
            "version, or restore a backup made by this one")
    return tuple(m for m in MIGRATIONS if m.version > start)


def check_readable(found: int | None, where: str) -> None:
    """A read-only handle needs the current version (it cannot migrate)."""
    pending(found, where)
    if found != CURRENT_VERSION:
        raise StoreError(
            f"the store at {where} has schema version {found}; this dmfdns reads "
            f"{CURRENT_VERSION} and migrates a store when it opens it for writing "
            "(dmfdns serve, or dmfdns records put)")


def run(tables: MigrationTables, found: int | None, where: str) -> tuple[Migration, ...]:
    """Apply what ``pending`` lists to ``tables`` and record the new version; the caller
    commits (or aborts, when this raises)."""
    todo = pending(found, where)
    for migration in todo:
        migration.apply(tables)
    if todo or found is None:
        tables.put("meta", SCHEMA_KEY.encode("ascii"), str(CURRENT_VERSION).encode("ascii"))
    return todo
