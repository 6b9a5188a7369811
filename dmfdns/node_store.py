"""The node's store: opening the LMDB environment, the secret it keeps in the store's meta
table, and the sweep loop that removes expired values (layer 3, used by ``make_service``
and the admin commands)."""

import os

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from .config import Config
from .store.api import StoreError, StoreFull
from .node_lock import check_data_dir
from .store.lmdb_store import LmdbStore

store_log = Logger(namespace="dmfdns.store")
COOKIE_SECRET_KEY = "dns:cookie_secret"
COOKIE_SECRET_BYTES = 16


def open_store(config: Config, *, readonly: bool = False,
               journal_limit: int = 0) -> LmdbStore:
    """The node's LMDB store (created on first use unless ``readonly``), migrated to the
    current schema version (logged) when opened for writing; it keeps the zone-transfer
    journal when ``journal_limit`` > 0."""
    data_dir = config.node.data_dir
    check_data_dir(data_dir)
    existed = (data_dir / "data.mdb").exists()
    if not readonly:
        data_dir.mkdir(parents=True, exist_ok=True)
    elif not existed:
        raise StoreError(f"no dmfdns store at {data_dir} (nothing was written yet)")
    store = LmdbStore(data_dir, map_size=None if readonly else config.store.map_size,
                      readonly=readonly, node_id=config.node.node_id,
                      journal_limit=journal_limit)
    for migration in store.migrated if existed else ():
        store_log.info("store at {path} migrated to schema {version}: {what}",
                       path=str(data_dir), version=migration.version, what=migration.what)
    return store


def cookie_secret(store) -> bytes:
    """The node's RFC 9018 cookie secret, made once and kept in the store so server
    cookies stay valid across restarts."""
    secret = store.meta_get(COOKIE_SECRET_KEY)
    if secret is None or len(secret) != COOKIE_SECRET_BYTES:
        secret = os.urandom(COOKIE_SECRET_BYTES)
        store.meta_set(COOKIE_SECRET_KEY, secret)
    return secret


class Sweeper:
    """Removes expired values in bounded batches: one batch per tick, and while a batch
    comes back full the next one follows on the next reactor turn (never a loop that holds
    the reactor). A failing batch is logged and counted; the loop goes on.

    A batch commits through ``run`` (``node.commit_runner``: where the node's commits run,
    off the reactor thread; None: inline), as a plain write. Only when the map is full does
    it commit on the reactor thread with the store's reserve for removals (a drain resizes
    the map, which must not happen beside the reactor's reads); a batch refused even then is
    retried at once with half as many records, down to one; a success restores the full
    batch."""

    def __init__(self, store, clock, batch: int, run=None):
        self.store = store
        self.clock = clock
        self.batch = batch
        self._run = run
        self._batch_now = batch
        self.removed = 0
        self.failures = 0
        self._follow_up = None
        self._sweeping = None          # the Deferred of a batch committing off the reactor

    def tick(self) -> None:
        self._follow_up = None
        if self._sweeping is not None:
            return
        batch = self._batch_now
        if self._run is not None and batch == self.batch:
            self._sweeping = self._run(self.store.sweep, self.clock.seconds(), batch,
                                       drain=False)
            self._sweeping.addBoth(self._swept_apart, batch)
            return
        self._drain(batch)

    def _swept_apart(self, outcome, batch: int) -> None:
        self._sweeping = None
        if not isinstance(outcome, Failure):
            self._swept(outcome, batch)
        elif outcome.check(StoreFull):
            self._drain(batch)          # the map is full: use the reserve, here
        else:
            self.failures += 1
            store_log.failure("sweep failed; retrying at the next tick", outcome)

    def _drain(self, batch: int) -> None:
        try:
            removed = self.store.sweep(self.clock.seconds(), batch)
        except StoreFull as full:
            self.failures += 1
            if batch > 1:
                self._batch_now = batch // 2
                self._follow_up = self.clock.callLater(0, self.tick)
            store_log.warn("sweep of {batch} records refused: {error}; next batch {next}",
                           batch=batch, error=str(full), next=self._batch_now)
            return
        except Exception:
            self.failures += 1
            store_log.failure("sweep failed; retrying at the next tick")
            return
        self._swept(removed, batch)

    def _swept(self, removed: int, batch: int) -> None:
        self._batch_now = self.batch
        self.removed += removed
        if removed >= batch:
            self._follow_up = self.clock.callLater(0, self.tick)

    def stop(self) -> defer.Deferred:
        """Stop sweeping; fires once no batch is committing any more."""
        if self._follow_up is not None and self._follow_up.active():
            self._follow_up.cancel()
        self._follow_up = None
        if self._sweeping is None:
            return defer.succeed(None)
        done = defer.Deferred()
        self._sweeping.addBoth(lambda result: (done.callback(None), result)[1])
        return done
