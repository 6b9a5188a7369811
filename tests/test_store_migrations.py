"""Schema versions of the LMDB store: every stored layout (``tests/fixtures/store-v*``, each
made by the code of its version) opens with the current code, migrates in one transaction
and keeps every record; a store newer than the code is refused untouched."""

import json
import pathlib
import shutil

import lmdb   # only to look at the raw tables, as another dmfdns version would have left them
import pytest

from dmfdns.store import migrations
from dmfdns.store.api import StoreError
from dmfdns.store.credentials import Credentials
from dmfdns.store.lmdb_store import LmdbStore
from dmfdns.store.migrations import CURRENT_VERSION, Migration, SchemaTooNew

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
CONTENT = json.loads((FIXTURES / "store_fixture_records.json").read_text())
NOW = CONTENT["written_at"] + 2
MAP_SIZE = 64 * 2**20
STORES = sorted(FIXTURES.glob("store-v*"))


def copy_of(fixture: pathlib.Path, tmp_path) -> pathlib.Path:
    target = tmp_path / fixture.name
    shutil.copytree(fixture, target)
    return target


def raw(path, key: bytes, table: bytes = b"meta"):
    """One value as stored, read past the store code; also which tables exist."""
    env = lmdb.open(str(path), readonly=True, max_dbs=16, lock=False)
    try:
        with env.begin() as txn:
            tables = {bytes(k) for k, _ in txn.cursor()}
            value = txn.get(key, db=env.open_db(table, txn=txn, create=False)) \
                if table in tables else None
        return (None if value is None else bytes(value)), tables
    finally:
        env.close()


def test_the_migrations_are_ordered_one_version_apart():
    versions = [m.version for m in migrations.MIGRATIONS]
    assert versions == list(range(migrations.BASE_VERSION + 1, CURRENT_VERSION + 1))
    assert all(m.what and callable(m.apply) for m in migrations.MIGRATIONS)


def test_there_is_a_fixture_for_every_schema_version_before_the_current():
    made = {int(p.name.split("-")[1][1:]) for p in STORES}
    assert set(range(migrations.BASE_VERSION, CURRENT_VERSION)) <= made


@pytest.mark.parametrize("fixture", STORES, ids=lambda p: p.name)
def test_an_older_store_migrates_and_keeps_every_record(fixture, tmp_path):
    path = copy_of(fixture, tmp_path)
    found = int(raw(path, b"store:schema")[0])
    store = LmdbStore(path, map_size=MAP_SIZE, node_id=CONTENT["node_id"])
    try:
        assert [m.version for m in store.migrated] == list(range(found + 1,
                                                                 CURRENT_VERSION + 1))
        expected = {}
        for name, value, _ in CONTENT["records"]:
            expected.setdefault(name, []).append(value)
        for name, values in expected.items():
            assert [v.value for v in store.get(name, NOW)] == values
            assert store.packed_txt(name) is not None
        gone, value = CONTENT["deleted"]
        assert store.get(gone, NOW) == []
        assert [(c.value, c.deleted) for c in store.changes_for(gone, NOW)] == [(value, True)]
        for key, value in CONTENT["meta"].items():
            assert store.meta_get(key) == value.encode()
        assert store.stats().values == len(CONTENT["records"])
        token_file = path / "token.txt"
        credentials = Credentials(store)
        if token_file.exists():
            record = credentials.lookup_token(token_file.read_text().strip())
            assert record is not None and record.subject == CONTENT["token_subject"]
        assert credentials.issue_token("bob@mesh.test", now=NOW)   # the auth table works
        assert store.put("new.mesh.test", "after the migration", expiry=NOW + 60, now=NOW)
    finally:
        store.close()
    assert raw(path, b"store:schema")[0] == str(CURRENT_VERSION).encode()
    again = LmdbStore(path, map_size=MAP_SIZE)
    assert again.migrated == ()
    assert [v.value for v in again.get("new.mesh.test", NOW)] == ["after the migration"]
    again.close()


def test_a_fresh_store_takes_the_same_path_to_the_current_version(tmp_path):
    store = LmdbStore(tmp_path / "db", map_size=MAP_SIZE)
    assert store.migrated == migrations.MIGRATIONS
    store.close()
    assert raw(tmp_path / "db", b"store:schema")[0] == str(CURRENT_VERSION).encode()


def forge_version(path, version: bytes) -> None:
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.put(b"store:schema", version)
    env.close()


def test_a_store_newer_than_the_code_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "db"
    LmdbStore(path, map_size=MAP_SIZE).close()
    forge_version(path, b"99")
    before = (path / "data.mdb").read_bytes()
    for readonly in (False, True):
        with pytest.raises(SchemaTooNew, match=r"schema version 99, newer than this dmfdns "
                                               rf"knows \(up to {CURRENT_VERSION}\)"):
            LmdbStore(path, map_size=None if readonly else MAP_SIZE, readonly=readonly)
    assert (path / "data.mdb").read_bytes() == before


def test_an_unreadable_version_is_a_clear_error(tmp_path):
    path = tmp_path / "db"
    LmdbStore(path, map_size=MAP_SIZE).close()
    forge_version(path, b"two")
    with pytest.raises(StoreError, match="schema version b'two' is not a number"):
        LmdbStore(path, map_size=MAP_SIZE)


def test_a_failing_migration_leaves_the_store_at_its_old_version(tmp_path, monkeypatch):
    path = copy_of(FIXTURES / "store-v1", tmp_path)

    def half_done(tables):
        tables.put("meta", b"half", b"written")
        raise RuntimeError("the last migration broke")
    broken = CURRENT_VERSION + 1
    monkeypatch.setattr(migrations, "MIGRATIONS",
                        migrations.MIGRATIONS + (Migration(broken, "breaks", half_done),))
    monkeypatch.setattr(migrations, "CURRENT_VERSION", broken)
    with pytest.raises(RuntimeError, match="the last migration broke"):
        LmdbStore(path, map_size=MAP_SIZE)
    version, tables = raw(path, b"store:schema")
    assert version == b"1" and b"auth" not in tables      # migration 2 rolled back too
    assert raw(path, b"half")[0] is None


def test_a_read_only_handle_needs_a_migrated_store(tmp_path):
    path = copy_of(FIXTURES / "store-v1", tmp_path)
    with pytest.raises(StoreError, match=r"schema version 1; this dmfdns reads "
                                         rf"{CURRENT_VERSION} and migrates a store when it "
                                         "opens it for writing"):
        LmdbStore(path, readonly=True)
    LmdbStore(path, map_size=MAP_SIZE).close()
    reader = LmdbStore(path, readonly=True)
    assert [v.value for v in reader.get("alpha.mesh.test", NOW)][0] == \
        CONTENT["records"][0][1]
    reader.close()
