"""Signing a name's TXT RRset when the store writes it (the store's ``sign_blob`` hook).

Every write that changes a name's values (HTTP, sync, UPDATE, CLI import, a delete) goes
through one store transaction (``store.batch``), which calls this with the name's new blob
and stores what it returns beside it (``rrsig_store``): a positive DO answer is then one
read and a splice, with no signing while answering. It runs where the commit runs (group
commits run in a thread, off the reactor). Names outside a signed zone, and names that own
static zone data (their RRset also holds the zone file's values: the responder signs
those on the fly), get None.
"""

from . import rrsig_store

TXT = 16


class WriteSigner:
    """``signers()`` gives ``{origin: signer.ZoneSigner}`` now (a reload or a key rollover
    replaces them); ``zones`` and ``answer_ttl`` (the Original TTL signed: the TTL an
    answer has at full lifetime) can be replaced with ``configure``. Counters:
    ``signatures`` made, ``records`` stored, ``failures`` (a signing error: the name is
    left to on-the-fly signing)."""

    def __init__(self, zones, signers, answer_ttl: int):
        self._signers = signers
        self.configure(zones, answer_ttl)
        self.signatures = 0
        self.records = 0
        self.failures = 0

    def configure(self, zones, answer_ttl: int) -> None:
        ordered = sorted(zones, key=lambda zone: -len(zone.labels))
        self._zones = tuple((zone.origin, "." + zone.origin) for zone in ordered)
        self._static = frozenset().union(*(zone.owners for zone in zones))
        self.answer_ttl = answer_ttl

    def zone_signer(self, name: str):
        """The signer of the zone holding ``name`` (most specific zone), or None."""
        for origin, suffix in self._zones:
            if name.endswith(suffix) or name == origin:
                return self._signers().get(origin)
        return None

    def active(self) -> bool:
        """Whether any zone is signed now."""
        return bool(self._signers())

    def signs(self, name: str) -> bool:
        """Whether ``name``'s RRset is one this stores RRSIGs for (no static data)."""
        return name not in self._static

    def __call__(self, name: str, blob: bytes, now_ms: int) -> bytes | None:
        signer = self.zone_signer(name)
        if signer is None or not self.signs(name):
            return None
        keys = signer.keys_for(TXT)
        try:
            record = rrsig_store.build(keys, signer.apex, name.encode("ascii").split(b"."),
                                       self.answer_ttl, blob, now_ms,
                                       signer.window(now_ms / 1000))
        except Exception:       # a bug or a key that cannot sign: sign on the fly instead
            self.failures += 1
            return None
        if record is not None:
            self.records += 1
            self.signatures += len(keys) * rrsig_store.steps(record)
        return record

    def profile(self, signer) -> bytes:
        """What a record signed for ``signer``'s zone now starts with."""
        return rrsig_store.profile(signer.keys_for(TXT), self.answer_ttl)
