"""Digest-and-pull anti-entropy against each peer (docs/decisions.md §6.3,
docs/compatibility.md §3).

Per peer and tick: read digest pages from the persisted cursor and keep going while the
peer says ``has_more``, inside a budget (pages, records, seconds); diff every page against
the local store; pull what is missing or newer in batches of at most 256 names; put every
pulled value through the same admission as an HTTP write; merge a page's admitted changes
and persist the cursor past it (the store's meta) in **one** transaction, one durable
commit per page. It is pipelined: the next digest page is asked for while this page's
pulls run, up to ``PULLS_IN_FLIGHT`` pulls are in flight at once, and a page commits while
the next one is pulled (its records are admitted once the commit before has landed), so
both nodes and the disk keep working.

Nothing here holds the reactor (DNS is answered on the same thread): the diff of a page
against the store and the admission of a pulled batch (each identity an Ed25519
verification) run in slices within the node's shared budget of reactor time per turn
(``dmfdns.slicing``), giving the reactor a turn between them, and every store write goes through ``run_write``, where the node's commits
run: off the reactor thread, since a durable commit waits on the disk.

What the reference does differently, and why this does not:

* the cursor is a position in the *peer's* change log, persisted per peer, so a restart
  resumes instead of re-walking history and the local clock never enters it;
* a value that fails validation or admission is skipped and counted by reason, and the
  cursor moves on: one bad entry never stalls a peer (a transport failure does keep the
  cursor, so the page is read again next tick);
* between dmfdns peers, versions and tombstones travel (deletes replicate), and once the
  walk has caught up the full-set bucket digests are compared (``dmfdns.sync.fullset``): an
  equal root confirms convergence with one small request; unequal buckets are listed and
  diffed, which also repairs anything a cursor walk could miss.

Admission runs against the store as it was before a batch, so within one batch the RRset
cap counts only what was stored before. Prekeys are checked last in a batch, against the
stored identities and those admitted earlier in the same batch, so a node that backfills a
user's identity and prekeys together still verifies the prekeys.
"""

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

from ..proto import admission
from ..slicing import Slicer
from ..store.api import Change, Cursor, StoreError
from ..store.changelog import format_cursor, parse_cursor
from ..store.writes import WriteService
from . import wire
from .peer_client import PeerError

CURSOR_META = "sync:cursor:"
PULL_BATCH = wire.MAX_PULL_NAMES
LISTING_PAGE = 1000
MAX_BUCKETS_PER_CHECK = 32
RECHECK_AFTER_MISMATCH = 3.0
PULLS_IN_FLIGHT = 4       # pull requests one peer has in flight at once
log = Logger(namespace="dmfdns.sync")


@dataclass(frozen=True)
class Budget:
    """What one peer may cost in one tick."""

    page_limit: int = 1000
    max_pages: int = 1000
    max_records: int = 1_000_000
    seconds: float = 9.0


@dataclass(frozen=True)
class Peer:
    peer_id: str
    url: str


@dataclass
class PeerState:
    """Everything known about one peer; plain numbers, read by the metrics collector."""

    peer: Peer
    cursor: Cursor = Cursor()
    extended: bool | None = None            # None until the peer has answered once
    caught_up: bool = False
    lag_seconds: float = 0.0
    last_success: float | None = None
    last_error: str = ""
    failing: bool = False
    converged: bool | None = None
    next_fullset: float = 0.0
    pages: int = 0
    pulled: int = 0                          # records received and admitted
    applied: int = 0                         # of those, the ones that changed the store
    fullset_checks: dict = field(default_factory=dict)   # "match" / "mismatch" -> count
    rejected: dict = field(default_factory=dict)         # reason -> count
    errors: dict = field(default_factory=dict)           # PeerError reason -> count
    bytes_received: int = 0
    bytes_sent: int = 0

    def count(self, table: dict, reason: str, n: int = 1) -> None:
        table[reason] = table.get(reason, 0) + n


class AntiEntropy:
    """Sync with a set of peers. ``client_for(peer)`` gives a ``PeerClient``; ``writes`` is
    the node's write service (``dmfdns.store.writes``), through which every pulled value
    is admitted and applied; ``index`` is the node's ``FullSetIndex`` (None: no full-set
    comparison). ``run_write(fn, *args)`` runs a store write where the node's commits run
    and returns a Deferred (``GroupCommitter.call``; default: inline). ``slicer`` is the
    node's shared budget of reactor time per turn (``dmfdns.slicing``; by default one of
    its own on ``clock``)."""

    def __init__(self, store, clock, *, client_for: Callable, writes: WriteService,
                 budget: Budget = Budget(), index=None, fullset_interval: float = 60.0,
                 deadline_slack: float = 10.0, run_write=None, slicer: Slicer | None = None):
        self.store = store
        self.clock = clock
        self.run_write = run_write or defer.maybeDeferred
        self.slicer = slicer if slicer is not None else Slicer(clock)
        self._slice_end = 0.0
        self.client_for = client_for
        self.writes = writes
        self.budget = budget
        self.index = index
        self.fullset_interval = fullset_interval
        # A peer's share of a tick ends at its budget plus this, whatever its transport
        # does (a peer that never answers must not hold up the others' next tick).
        self.deadline_slack = deadline_slack
        self.states: dict[str, PeerState] = {}
        self._clients: dict[str, object] = {}
        self.ticks = 0
        self.tick_failures = 0

    # --- peers ------------------------------------------------------------------------------

    def set_peers(self, peers) -> None:
        """Follow exactly ``peers`` (``Peer``s); a known peer id keeps its state."""
        wanted = {peer.peer_id: peer for peer in peers}
        for peer_id in list(self.states):
            if peer_id not in wanted:
                del self.states[peer_id]
                self._clients.pop(peer_id, None)
        for peer_id, peer in wanted.items():
            state = self.states.get(peer_id)
            if state is None:
                self.states[peer_id] = PeerState(peer, cursor=self._load_cursor(peer_id))
            elif state.peer != peer:
                state.peer = peer
                self._clients.pop(peer_id, None)

    def client(self, state: PeerState):
        client = self._clients.get(state.peer.peer_id)
        if client is None:
            client = self._clients[state.peer.peer_id] = self.client_for(state.peer)
        return client

    def _load_cursor(self, peer_id: str) -> Cursor:
        try:
            raw = self.store.meta_get(CURSOR_META + peer_id)
        except StoreError:
            return Cursor()
        cursor = parse_cursor(raw.decode("utf-8", "replace")) if raw else None
        return cursor or Cursor()

    async def _turn(self) -> None:
        """Give the reactor a turn once the current slice has run its time."""
        self._slice_end = await self.slicer.turn(self._slice_end)

    # --- the tick ---------------------------------------------------------------------------

    def tick(self) -> defer.Deferred:
        """Sync every peer concurrently; the Deferred never fails."""
        self.ticks += 1
        runs = [defer.ensureDeferred(self.sync_peer(state)).addTimeout(
            self.budget.seconds + self.deadline_slack, self.clock)
            for state in self.states.values()]
        done = defer.DeferredList(runs, consumeErrors=True)
        return done.addCallback(lambda _: None)

    async def sync_peer(self, state: PeerState) -> None:
        """One peer's share of a tick; every failure is counted, none escapes."""
        client = self.client(state)
        try:
            await self._walk(client, state)
            if self._fullset_due(state):
                await self._fullset(client, state)
        except PeerError as exc:
            self._failed(state, exc.reason, str(exc))
        except defer.CancelledError:
            self._failed(state, "timeout", "the peer's share of the tick ran out of time")
        except StoreError as exc:
            self._failed(state, "store", str(exc))
        except Exception as exc:      # a bug: log it, keep the loop alive
            self._failed(state, "internal", repr(exc))
            log.failure("anti-entropy with {peer} failed", peer=state.peer.peer_id)
        else:
            if state.failing:
                log.info("sync with {peer} recovered", peer=state.peer.peer_id)
            state.failing, state.last_error = False, ""
            state.last_success = self.clock.seconds()
        finally:
            state.bytes_received = getattr(client, "bytes_received", 0)
            state.bytes_sent = getattr(client, "bytes_sent", 0)

    def _failed(self, state: PeerState, reason: str, detail: str) -> None:
        state.count(state.errors, reason)
        state.last_error = detail
        if not state.failing:
            log.warn("sync with {peer} ({url}) failed: {detail}", peer=state.peer.peer_id,
                     url=state.peer.url, detail=detail)
        state.failing = True

    async def _walk(self, client, state: PeerState) -> None:
        """Digest pages from the cursor while the peer has more and the budget lasts.

        Pipelined: the next page is asked for as soon as this one is read, so the peer
        serves it while this one's pulls run; a page's admitted changes and the cursor past
        it commit in one transaction, in the commit thread, while the next page is pulled
        (one page's commit in flight at a time, so pages land in order)."""
        deadline = self.clock.seconds() + self.budget.seconds
        pages = records = 0
        position = state.cursor
        asked = self._ask_digest(client, position)
        committing = None
        try:
            while True:
                now = self.clock.seconds()
                page, extended = await asked
                asked = None
                state.extended = extended
                pages += 1
                state.pages += 1
                for reason in page.rejected:
                    state.count(state.rejected, reason)
                wanted = await self._wanted(page.entries, _ms(now))
                following = self._past(position, page, extended)
                more = (page.has_more and following is not None
                        and pages < self.budget.max_pages
                        and records + len(wanted) < self.budget.max_records
                        and self.clock.seconds() < deadline)
                if more:
                    asked = self._ask_digest(client, following)
                received, changes, admitted = await self._pull(client, state, wanted, extended,
                                                               committing)
                records += received
                if committing is not None:
                    landing, committing = committing, None
                    await landing
                committing = self._commit(state, admitted, changes, following,
                                          self.clock.seconds())
                position = following or position
                state.caught_up = not page.has_more
                state.lag_seconds = 0.0 if state.caught_up else max(
                    0.0, now - position.ts_ms / 1000)
                if not more:
                    break
            landing, committing = committing, None
            await landing
        finally:
            _abandon(asked)
            if committing is not None:
                # The walk failed with a page's commit in flight: it still lands (in its
                # thread), and the store must not close under it, so the walk waits.
                try:
                    await committing
                except Exception:
                    log.failure("a sync commit failed")

    def _ask_digest(self, client, cursor: Cursor) -> defer.Deferred:
        return defer.ensureDeferred(client.digest(cursor, self.budget.page_limit,
                                                  _ms(self.clock.seconds())))

    @staticmethod
    def _past(cursor: Cursor, page, extended: bool) -> Cursor | None:
        """Where the page leaves the cursor, or None if it does not move it."""
        candidates = [c for c in (page.last_cursor, page.next_cursor if extended else None)
                      if c is not None]
        if not candidates or max(candidates) <= cursor:
            return None
        return max(candidates)

    def _commit(self, state: PeerState, admitted, changes: list, following, now: float):
        """Merge a page's admitted ``changes`` and move the cursor to ``following`` (None:
        stays) in one transaction through ``run_write``; a Deferred, counted when done."""
        meta = {} if following is None else {
            CURSOR_META + state.peer.peer_id: format_cursor(following).encode("utf-8")}
        if not changes and not meta:
            return defer.succeed(None)

        def applied(result):
            for _ in result.rejected:
                state.count(state.rejected, wire.STORE)
            state.applied += result.changed
            state.pulled += len(changes) - len(result.rejected)
            if following is not None:
                state.cursor = following
        return self.run_write(admitted.apply, changes, now, meta).addCallback(applied)

    async def _wanted(self, entries, now_ms: int) -> list:
        """The entries that tell us something new, one per (name, hash); in slices."""
        wanted, seen, local = [], set(), {}
        for entry in entries:
            await self._turn()
            key = (entry.name, entry.value_hash)
            if key in seen:
                continue
            seen.add(key)
            if entry.name not in local:
                local[entry.name] = {c.value_hash: c for c in
                                     self.store.changes_for(entry.name, now_ms / 1000)}
            if wire.wanted(entry, local[entry.name].get(entry.value_hash), now_ms):
                wanted.append(entry)
        return wanted

    # --- pulling ----------------------------------------------------------------------------

    async def _pull(self, client, state: PeerState, wanted: list, extended: bool,
                    landed=None) -> tuple:
        """Pull ``wanted`` entries in batches of at most 256 names, ``PULLS_IN_FLIGHT`` at a
        time, each admitted as it arrives (once ``landed``, the previous page's commit, is
        done: admission must see what it committed, e.g. the identity of a prekey);
        ``(records received, admitted changes, their RemoteBatch)``. A failed pull fails
        the whole (after the others finished), so the cursor stays before this page."""
        admitted, changes = self.writes.remote_batch(), []
        batches, batch = [], {}
        for entry in wanted:
            if entry.name not in batch and len(batch) == PULL_BATCH:
                batches.append(batch)
                batch = {}
            batch.setdefault(entry.name, []).append(entry)
        if batch:
            batches.append(batch)
        gate = defer.DeferredSemaphore(PULLS_IN_FLIGHT)
        runs = [gate.run(lambda b=b: defer.ensureDeferred(self._pull_batch(
            client, state, b, extended, (admitted, changes, landed)))) for b in batches]
        results = await defer.DeferredList(runs, consumeErrors=True)
        for ok, result in results:
            if not ok:
                result.raiseException()
        return sum(result for _, result in results), changes, admitted

    async def _pull_batch(self, client, state: PeerState, batch: dict, extended: bool,
                          into: tuple) -> int:
        """Pull one batch and admit it into ``into`` (RemoteBatch, changes, landed)."""
        admission_batch, changes, landed = into
        advertised = {(e.name, e.value_hash): e for entries in batch.values() for e in entries}
        hashes = [h for _, h in advertised] if extended else None
        now = self.clock.seconds()
        records, bad, _ = await client.pull(list(batch), hashes, _ms(now))
        for reason in bad:
            state.count(state.rejected, reason)
        if landed is not None:
            await defer.DeferredList([landed])     # fires once it has; its result stays
        now = self.clock.seconds()
        got = set()
        for record in _prekeys_last(records):
            await self._turn()
            change = self._checked(state, record, batch, advertised, got, extended, now,
                                   admission_batch)
            if change is not None:
                changes.append(change)
        missing = len(advertised) - len(got)
        if missing:
            state.count(state.rejected, wire.MISSING, missing)
        return len(records)

    def _checked(self, state, record, batch, advertised, got, extended, now,
                 admission_batch) -> Change | None:
        """The ``Change`` to apply for a pulled record, or None (counted when refused)."""
        if record.name not in batch:
            state.count(state.rejected, wire.UNREQUESTED)
            return None
        value_hash = hashlib.sha256(record.value.encode("utf-8", "surrogatepass")).hexdigest()
        entry = advertised.get((record.name, value_hash))
        if entry is None:
            # A reference peer answers with every value at a name; only an extended peer
            # was asked for exactly these hashes, so only there is an extra one a fault.
            if extended:
                state.count(state.rejected, wire.UNADVERTISED)
            return None
        if (record.name, value_hash) in got:
            return None
        got.add((record.name, value_hash))
        change, ttl = self._change(state, record, entry, value_hash, extended, now)
        if change is None:
            state.count(state.rejected, wire.BAD_RECORD)
            return None
        reason = admission_batch.check(record.name, record.value, ttl, now, change.deleted)
        if reason is not None:
            state.count(state.rejected, reason)
            return None
        return change

    def _change(self, state, record, entry, value_hash, extended, now):
        """``(Change, ttl for admission)``; the expiry is capped at the node's max TTL."""
        max_ttl = self.writes.limits.max_ttl
        if extended:
            # The pull may carry a newer version than the digest did; it is the one
            # applied (the merge keeps whichever version is larger anyway).
            expiry = min(record.expiry_ms / 1000, now + max_ttl)
            ttl = max(1, math.ceil(expiry - now))
            return Change(0, record.name, value_hash, record.value, expiry, record.deleted,
                          record.origin, record.written_ms), ttl
        if record.ttl < 1:
            return None, 0
        ttl = min(record.ttl, max_ttl)
        return Change(0, record.name, value_hash, record.value, now + ttl, False,
                      state.peer.peer_id[:wire.MAX_ORIGIN], entry.ts_ms), ttl

    # --- the full-set comparison ------------------------------------------------------------

    def _fullset_due(self, state: PeerState) -> bool:
        return (self.index is not None and state.extended and state.caught_up
                and self.clock.seconds() >= state.next_fullset)

    async def _fullset(self, client, state: PeerState) -> None:
        if not await self.index.catch_up(self.clock):
            return
        summary = await client.summary(self.index.root())
        if summary.get("match") is True:
            state.next_fullset = self.clock.seconds() + self.fullset_interval
            state.converged = True
            state.count(state.fullset_checks, "match")
            return
        # Writes of the last moments are in one index and not yet in the other, so a
        # mismatch is looked at again soon rather than after a whole interval.
        state.next_fullset = self.clock.seconds() + min(self.fullset_interval,
                                                        RECHECK_AFTER_MISMATCH)
        state.converged = False
        state.count(state.fullset_checks, "mismatch")
        differing = self.index.differing(summary.get("buckets", {}))
        for bucket in differing[:MAX_BUCKETS_PER_CHECK]:
            await self._repair_bucket(client, state, bucket)

    async def _repair_bucket(self, client, state: PeerState, bucket: int) -> None:
        after = None
        for _ in range(self.budget.max_pages):
            listing = await client.bucket(bucket, after, LISTING_PAGE)
            now_ms = _ms(self.clock.seconds())
            entries, rejected = wire.parse_listing(listing, now_ms)
            for reason in rejected:
                state.count(state.rejected, reason)
            _, changes, admitted = await self._pull(client, state,
                                                    await self._wanted(entries, now_ms), True)
            await self._commit(state, admitted, changes, None, self.clock.seconds())
            if listing.get("has_more") is not True or not entries:
                return
            after = (entries[-1].name, entries[-1].value_hash)


def _abandon(asked: defer.Deferred | None) -> None:
    """Drop a digest asked for ahead that will not be read (its failure included)."""
    if asked is not None:
        asked.addErrback(lambda _: None)
        asked.cancel()


def _prekeys_last(records: list) -> list:
    """``records`` with the prekeys moved to the end (otherwise in order), so the identity
    that signs them is admitted first when it comes in the same batch."""
    return sorted(records, key=lambda r: admission.classify(r.name).kind == admission.PREKEYS)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
