"""The node's answer to a DNS UPDATE: TSIG, authorization, the one write service, claims.

``UpdateHandler(message, now=..., proto=...)`` is called by the responder for every UPDATE
(opcode 5) and returns the response bytes (None: drop a runt). In order:

1. **TSIG** (RFC 8945, ``dmfdns.dns.tsig``): keys come from the node's credentials (LMDB,
   cached in memory), the time window is the signer's fudge capped by ``[update]
   tsig_fudge``. A malformed TSIG is FORMERR; BADKEY, BADSIG and BADTIME are NOTAUTH with
   the TSIG RR carrying the error (section 5.3.2). Every response to a verified request is
   signed, errors included.
2. **Replays**: a verified request whose MAC was seen inside the time window is REFUSED
   (the reference has no replay cache).
3. **Parse** (``dmfdns.dns.update``): zone section, prerequisites, TXT operations.
4. **Who**: a verified key writes within its scope (``authority.TsigScope``); an unsigned
   update may only add claims (``authority.CLAIMANT``) when ``[update] claims`` is on,
   else REFUSED.
5. **Prerequisites** (RFC 2136 section 3.2) against the store and the zone file.
6. **Claims** (unsigned): each add is a claim at ``claim-N.mb-<hash12>.<zone>`` (two labels
   above the zone) whose ``exp - now`` is at most ``claim_max_ttl``; its TTL is capped by
   it; it takes a token from its mailbox's bucket and from the node-wide claim budget
   (SERVFAIL when either is empty: the reference's "transient" answer).
7. **Admission and commit** through the write service (``dmfdns.store.writes``): the
   whole packet is admitted (caps as HTTP, DMP verification, scope per op) and committed
   in one transaction, or nothing is (REFUSED). The SOA serial follows the store's
   generation, so a committed update bumps it.
"""

from collections import OrderedDict
from dataclasses import dataclass, field

from dnslib import DNSBuffer

from ..http.ratelimit import TokenBucketLimiter
from ..proto import admission, authority, claim
from ..store.api import StoreError
from ..store.credentials import CredentialError
from ..store.writes import DELETE, PUBLISH, WriteRequest
from . import tsig
from . import update as wire
from .update import FORMERR, NOERROR, REFUSED, SERVFAIL, TXT, UpdateError

MAX_CLAIM_BUCKETS = 100_000


@dataclass(frozen=True)
class UpdateSettings:
    fudge: int = 300
    replay_cache: int = 100_000
    claims: bool = True
    claim_max_ttl: int = 86400
    claim_rate: float = 0.5
    claim_burst: int = 30
    claim_budget_rate: float = 20.0
    claim_budget_burst: int = 200


@dataclass
class UpdateCounters:
    """Plain integers exported at scrape time (``dmfdns.metrics``)."""

    responses: dict = field(default_factory=dict)      # (signed, rcode name) -> count
    tsig_errors: dict = field(default_factory=dict)    # BADKEY/BADSIG/BADTIME/... -> count
    replays: int = 0
    claims_accepted: int = 0
    claims_refused: int = 0
    claims_throttled: dict = field(default_factory=dict)   # "mailbox" / "budget" -> count

    def answered(self, signed: bool, rcode: int) -> None:
        key = ("signed" if signed else "unsigned", wire.RCODE_NAMES.get(rcode, str(rcode)))
        self.responses[key] = self.responses.get(key, 0) + 1


_TSIG_ERRORS = {tsig.BADSIG: "BADSIG", tsig.BADKEY: "BADKEY", tsig.BADTIME: "BADTIME",
                tsig.BADTRUNC: "BADTRUNC"}


class ReplayCache:
    """MACs of verified requests, each kept for the time window either side, bounded."""

    def __init__(self, window: float, limit: int):
        self.window = window
        self.limit = limit
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def seen_before(self, mac: bytes, now: float) -> bool:
        """Whether ``mac`` was seen inside the window; remembers it if not."""
        while self._seen:
            oldest, when = next(iter(self._seen.items()))
            if when > now - 2 * self.window and len(self._seen) < self.limit:
                break
            self._seen.popitem(last=False)
        if mac in self._seen:
            return True
        self._seen[mac] = now
        return False


class UpdateHandler:
    """DNS UPDATE for ``zones`` (parsed zone files) through ``writes`` (the node's write
    service), with TSIG keys from ``credentials``."""

    def __init__(self, *, zones, writes, credentials, clock,
                 settings: UpdateSettings = UpdateSettings()):
        self.zones = {zone.origin: zone for zone in zones}
        self.writes = writes
        self.credentials = credentials
        self.settings = settings
        self.counters = UpdateCounters()
        self.replays = ReplayCache(settings.fudge, settings.replay_cache)
        self.mailboxes = TokenBucketLimiter(settings.claim_rate, settings.claim_burst,
                                            clock.seconds, max_keys=MAX_CLAIM_BUCKETS)
        self.budget = TokenBucketLimiter(settings.claim_budget_rate,
                                         settings.claim_budget_burst, clock.seconds)

    def __call__(self, message: bytes, *, now: float, proto: str = "udp",
                 client=None) -> bytes | None:
        if wire.header_of(message) is None:
            return None
        verdict = tsig.verify(message, lambda name: self._key(name, now), now=now,
                              max_fudge=self.settings.fudge)
        if verdict.status == "formerr":
            return self._answer(message, FORMERR, verdict, now)
        if verdict.status == "notauth":
            name = _TSIG_ERRORS.get(verdict.error, str(verdict.error))
            self.counters.tsig_errors[name] = self.counters.tsig_errors.get(name, 0) + 1
            return self._answer(message, wire.NOTAUTH, verdict, now)
        try:
            rcode = self._apply(verdict, now)
        except UpdateError as exc:
            rcode = exc.rcode
        except (StoreError, CredentialError):
            rcode = SERVFAIL
        return self._answer(message, rcode, verdict, now)

    def _key(self, name: str, now: float):
        try:
            return self.credentials.tsig_key(name, now)
        except CredentialError:
            return None

    def _answer(self, message: bytes, rcode: int, verdict, now: float) -> bytes:
        body = verdict.unsigned or message
        self.counters.answered(verdict.status == "ok", rcode)
        response = wire.response(body, rcode, wire.zone_section(body))
        return tsig.finish(response, verdict, now=now)

    # --- the update -------------------------------------------------------------------------

    def _apply(self, verdict, now: float) -> int:
        update = wire.parse(verdict.unsigned, tuple(self.zones))
        signed = verdict.status == "ok"
        if signed and self.replays.seen_before(verdict.request_mac, now):
            self.counters.replays += 1
            raise UpdateError(REFUSED, "a replayed update")
        if signed:
            credential = verdict.key.attached
        elif self.settings.claims:
            credential = authority.CLAIMANT
        else:
            raise UpdateError(REFUSED, "unsigned updates are refused")
        rcode = wire.check_prerequisites(update.prerequisites,
                                         lambda name, rtype: self._rrset(name, rtype, now),
                                         lambda name: self._in_use(name, now))
        if rcode != NOERROR:
            return rcode
        requests = [_request(op) for op in update.ops]
        if not signed:
            requests = self._claims(requests, update.zone, now)
        return self._write(requests, credential, now)

    def _write(self, requests, credential, now: float) -> int:
        results = self.writes.admit(requests, now=now, path="update", credential=credential)
        refused = [r for r in results if isinstance(r, admission.Refusal)]
        if refused:
            if credential == authority.CLAIMANT:
                self.counters.claims_refused += len(requests)
            raise UpdateError(REFUSED, refused[0].message)
        self.writes.commit(results, now=now)
        if credential == authority.CLAIMANT:
            self.counters.claims_accepted += len(requests)
        return NOERROR

    def _claims(self, requests, zone: str, now: float) -> list[WriteRequest]:
        """The unsigned path: claim adds only, their TTL capped, within both budgets."""
        capped = []
        for request in requests:
            owner = admission.classify(request.name, zone)
            if (request.op != PUBLISH or owner.kind != admission.CLAIM
                    or owner.parent != zone):
                self.counters.claims_refused += 1
                raise UpdateError(REFUSED, "an unsigned update may only add claims")
            record = claim.decode(request.value)
            if record is not None and record.exp - now > self.settings.claim_max_ttl:
                self.counters.claims_refused += 1
                raise UpdateError(REFUSED, "the claim outlives the node's claim_max_ttl")
            capped.append(WriteRequest(PUBLISH, request.name, request.value,
                                       min(request.ttl, self.settings.claim_max_ttl)))
        for request in capped:
            mailbox = admission.classify(request.name, zone).parts[1]
            if not self.mailboxes.allow(mailbox):
                self._throttled("mailbox")
            if not self.budget.allow("all"):
                self._throttled("budget")
        return capped

    def _throttled(self, which: str) -> None:
        self.counters.claims_throttled[which] = self.counters.claims_throttled.get(which, 0) + 1
        raise UpdateError(SERVFAIL, f"claim {which} budget exhausted")

    # --- what the zone holds, for prerequisites ---------------------------------------------

    def _zone_of(self, name: str):
        inside = [origin for origin in self.zones
                  if name == origin or name.endswith("." + origin)]
        return self.zones[max(inside, key=len)] if inside else None

    def _rrset(self, name: str, rtype: int, now: float) -> set:
        zone = self._zone_of(name)
        found = set()
        if zone is not None:
            for rr in zone.rrset(name, rtype):
                found.add(wire.rdata_key(rtype, _packed_rdata(rr)))
        if rtype == TXT:
            found |= {b"txt:" + v.value.encode("utf-8")
                      for v in self.writes.store.get(name, now)}
        return found

    def _in_use(self, name: str, now: float) -> bool:
        zone = self._zone_of(name)
        return bool(self.writes.store.get(name, now)) or (
            zone is not None and zone.has_name(name))


def _request(op: wire.Op) -> WriteRequest:
    if op.kind == wire.ADD:
        return WriteRequest(PUBLISH, op.name, op.value, op.ttl)
    if op.kind == wire.DELETE_VALUE:
        return WriteRequest(DELETE, op.name, op.value)
    return WriteRequest(DELETE, op.name, None)


def _packed_rdata(rr) -> bytes:
    buffer = DNSBuffer()
    rr.rdata.pack(buffer)
    return bytes(buffer.data)
