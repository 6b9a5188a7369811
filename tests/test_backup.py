"""``dmfdns backup DEST``: a compacted copy that opens and holds every record; a clear,
non-zero refusal for a destination that exists or cannot be made, and for no store."""

import io
import shutil

import pytest

from dmfdns.cli import run as cli_run
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.migrations import CURRENT_VERSION
from test_cli_serve import write_config

NOW = 1_800_000_000.0


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli_run(list(argv), now=NOW, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def stored(tmp_path):
    """A config whose store holds 50 values (one name deleted again)."""
    conf = str(write_config(tmp_path))
    store = LmdbStore(tmp_path / "data", map_size=64 * 2**20)
    store.put_many([(f"n{i}.mesh.test", f"value {i}", NOW + 3600) for i in range(51)],
                   now=NOW)
    store.delete("n50.mesh.test", now=NOW)
    store.close()
    return conf, tmp_path


def test_a_backup_is_a_compact_copy_holding_every_record(stored):
    conf, tmp_path = stored
    dest = tmp_path / "backup-1"
    status, out, err = cli("backup", str(dest), "--config", conf)
    assert (status, err) == (0, "")
    assert (f"written to {dest}: schema version {CURRENT_VERSION}, 50 values at 50 names"
            in out)
    copy = LmdbStore(dest, readonly=True)
    try:
        assert all([v.value for v in copy.get(f"n{i}.mesh.test", NOW)] == [f"value {i}"]
                   for i in range(50))
        assert copy.get("n50.mesh.test", NOW) == []
    finally:
        copy.close()
    assert (dest / "data.mdb").stat().st_size <= (tmp_path / "data" / "data.mdb").stat().st_size


def test_an_existing_destination_is_refused_and_left_alone(stored):
    conf, tmp_path = stored
    for existing in (tmp_path / "empty-dir", tmp_path / "a-file"):
        if existing.name == "empty-dir":
            existing.mkdir()
        else:
            existing.write_text("keep me")
        status, out, err = cli("backup", str(existing), "--config", conf)
        assert status == 1 and out == ""
        assert err == (f"dmfdns: backup destination {existing} already exists; a backup "
                       "never overwrites: name a new directory\n")
    assert (tmp_path / "a-file").read_text() == "keep me"
    assert list((tmp_path / "empty-dir").iterdir()) == []


def test_a_destination_that_cannot_be_made_is_one_line(stored):
    conf, tmp_path = stored
    (tmp_path / "a-file").write_text("")
    for dest, reason in ((tmp_path / "a-file" / "backup", "Not a directory"),
                         (tmp_path / "missing" / "backup", "No such file or directory")):
        status, _, err = cli("backup", str(dest), "--config", conf)
        assert (status, err) == (1, f"dmfdns: cannot create backup directory {dest}: "
                                    f"{reason}\n")


def test_no_store_is_a_clear_error_and_makes_no_directory(tmp_path):
    conf = str(write_config(tmp_path))
    status, _, err = cli("backup", str(tmp_path / "b"), "--config", conf)
    assert (status, err) == (1, f"dmfdns: no dmfdns store at {tmp_path / 'data'} (nothing "
                                "was written yet)\n")
    assert not (tmp_path / "b").exists()


def test_a_failed_copy_keeps_nothing(stored):
    conf, tmp_path = stored
    (tmp_path / "data" / "data.mdb").write_bytes(b"not an lmdb file" * 512)
    dest = tmp_path / "b"
    status, _, err = cli("backup", str(dest), "--config", conf)
    assert status == 1 and err.startswith(f"dmfdns: backup failed, nothing kept at {dest}: ")
    assert not dest.exists()


def test_an_older_store_is_copied_as_it_is(tmp_path):
    import pathlib
    conf = str(write_config(tmp_path))
    fixture = pathlib.Path(__file__).resolve().parent / "fixtures" / "store-v1"
    shutil.copytree(fixture, tmp_path / "data")
    status, out, _ = cli("backup", str(tmp_path / "b"), "--config", conf)
    assert status == 0 and "schema version 1 (this dmfdns migrates it when it opens it)" in out
    copy = LmdbStore(tmp_path / "b", map_size=64 * 2**20)
    assert [m.version for m in copy.migrated] == list(range(2, CURRENT_VERSION + 1))
    assert copy.get("alpha.mesh.test", NOW + 2)
    copy.close()
