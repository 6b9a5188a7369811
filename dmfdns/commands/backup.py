"""``dmfdns backup DEST``: a consistent hot copy of the node's LMDB store.

Safe while the node runs: the copy is one read transaction of a read-only handle (like
``records list``), so it is a snapshot of one commit, compacted, and the node goes on
writing. ``DEST`` must be a new directory; the command never overwrites and removes what
it wrote when the copy fails. Restore: stop the node, move ``DEST/data.mdb`` into an empty
``data_dir`` (docs/operator-guide.md).
"""

import os
import pathlib
import shutil

from ..store.api import StoreError
from ..store.lmdb_copy import copy_environment
from ..store.lmdb_store import LmdbStore
from ..store.migrations import CURRENT_VERSION
from . import CommandError
from .serve import load


def register(sub) -> None:
    backup = sub.add_parser(
        "backup", help="copy the store to a new directory (safe while the node runs)",
        description="Write a consistent, compacted copy of the node's LMDB store into DEST, "
                    "a directory that must not exist yet. Safe while the node serves and "
                    "writes; the copy is one snapshot.")
    backup.add_argument("dest", metavar="DEST", help="new directory for the copy")
    backup.add_argument("--config", metavar="FILE",
                        help="node configuration (TOML); default: the embedded one")
    backup.set_defaults(handler=backup_store)


def backup_store(args, ctx) -> int:
    config = load(args.config)
    source = config.node.data_dir
    dest = pathlib.Path(args.dest)
    if not (source / "data.mdb").exists():
        raise CommandError(f"no dmfdns store at {source} (nothing was written yet)")
    _make_new_directory(dest)
    try:
        schema = copy_environment(source, dest)
    except (StoreError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise CommandError(f"backup failed, nothing kept at {dest}: {exc}") from None
    size = (dest / "data.mdb").stat().st_size
    print(f"backup of {source} written to {dest}: {_contents(dest, schema)}, "
          f"{size:,} bytes", file=ctx.stdout)
    return 0


def _make_new_directory(dest: pathlib.Path) -> None:
    if dest.exists() or dest.is_symlink():
        raise CommandError(f"backup destination {dest} already exists; a backup never "
                           "overwrites: name a new directory")
    try:
        dest.mkdir(mode=0o700)
    except OSError as exc:
        raise CommandError(f"cannot create backup directory {dest}: "
                           f"{exc.strerror}") from None
    if not os.access(dest, os.W_OK):
        dest.rmdir()
        raise CommandError(f"cannot write to backup directory {dest}")


def _contents(dest: pathlib.Path, schema: int) -> str:
    """What the copy holds, read back from it (so the command checks that it opens)."""
    if schema != CURRENT_VERSION:
        return f"schema version {schema} (this dmfdns migrates it when it opens it)"
    copy = LmdbStore(dest, readonly=True)
    try:
        stats = copy.stats()
    finally:
        copy.close()
    return f"schema version {schema}, {stats.values:,} values at {stats.names:,} names"
