"""A hot backup of a store: a consistent, compacted copy of one commit made from a
read-only handle while the node goes on writing (``dmfdns backup``)."""

import os

import lmdb

from . import migrations
from .api import StoreError
from .batch import SCHEMA
from .lmdb_tables import MAX_DBS


def copy_environment(path, dest) -> int:
    """Write a consistent, compacted copy of the store at ``path`` into the new, empty
    directory ``dest`` (``dest/data.mdb``, flushed to disk); the copy's schema version.

    The copy runs in one read transaction (``mdb_env_copy2`` with ``MDB_CP_COMPACT``) of a
    read-only handle, so it is a snapshot of one commit and works while the node (another
    process) writes: it does not take the node's lock and never blocks the writer. It
    copies whatever schema version it finds (a backup before an upgrade is the point)."""
    try:
        env = lmdb.open(os.fspath(path), readonly=True, max_dbs=MAX_DBS, lock=True,
                        subdir=True, create=False)
    except lmdb.Error as error:
        raise StoreError(f"cannot open the store at {path}: {error}") from None
    try:
        with env.begin() as txn:
            meta = env.open_db(b"meta", txn=txn, create=False)
            found = migrations.parse_version(txn.get(SCHEMA.encode("ascii"), db=meta))
        if found is None:
            raise StoreError(f"{path} is not a dmfdns store (no schema version)")
        env.copy(os.fspath(dest), compact=True)
    except lmdb.Error as error:
        raise StoreError(f"copying the store at {path} failed: {error}") from None
    finally:
        env.close()
    _flush(os.path.join(os.fspath(dest), "data.mdb"))
    _flush(os.fspath(dest))
    return found


def _flush(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
