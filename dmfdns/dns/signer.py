"""Online signing of one zone's answers (RFC 4033-4035): RRSIGs over the RRsets of an
answer, the apex DNSKEY/CDS/CDNSKEY RRsets, and compact denial of existence (RFC 9824).

A stored name's TXT RRset is signed when it is written, not here: the write's transaction
stores its RRSIGs beside the pre-packed answer (``write_signer``, ``rrsig_store``), so the
fast path answers a positive DO query with one read and a splice; a background re-signer
renews them as the window moves or keys change (``node_resign``). What is signed here, when
an answer needs it: denials (a negative answer exists for every name anyone asks, so it
cannot be signed ahead), the apex and static zone data, and any positive answer whose
stored RRSIGs do not fit the live RRset, keys or window (a fallback, never a wrong
signature). What keeps that cost bounded is a cache of signatures, an LRU keyed by a digest
of the exact signed data (RRSIG fields, validity window and canonical RRset): the same
RRset in the same window is signed once. The window moves every ``refresh`` seconds
(inception = the start of the refresh period minus ``skew``, expiration = that start +
``validity``), so every signature is re-made at most once per refresh period; stored
RRSIGs use the same window.

The served TTL of a stored TXT RRset counts down as its soonest value nears expiry; the
RRSIG carries the RRset's full TTL as Original TTL, which validators accept for any served
TTL up to it (RFC 4035 section 5.3.3), so the signature does not change as the TTL does.
"""

import hashlib
import struct
from collections import OrderedDict
from dataclasses import dataclass

from dnslib import RD, RR, DNSBuffer, DNSLabel

from . import dnssec
from .dnssec import CDNSKEY, CDS, DNSKEY, NSEC, NXNAME, RRSIG, ZoneKey

IN = 1
_NAME_TYPES = {2, 5, 12, 39}           # NS, CNAME, PTR, DNAME: RDATA is one name
SOA, MX, SRV = 6, 15, 33


@dataclass(frozen=True)
class SigningSettings:
    """Per zone: how long signatures are valid and how often they are re-made."""

    validity: int = 14 * 86400        # seconds from the refresh period's start to expiration
    refresh: int = 86400              # the window moves (signatures re-made) this often
    skew: int = 3600                  # inception set this far back for slow clocks
    cache_entries: int = 50_000       # signatures kept (LRU); about 250 bytes each

    def __post_init__(self):
        if not 0 < self.refresh < self.validity:
            raise ValueError("DNSSEC refresh must be > 0 and shorter than validity")
        if self.validity > 2**31 - 1 or self.skew < 0:
            raise ValueError("DNSSEC validity must fit 2^31 - 1 seconds, skew >= 0")
        if self.cache_entries < 1:
            raise ValueError("the DNSSEC signature cache needs at least one entry")


class ZoneSigner:
    """Signs answers of the zone at ``apex`` (wire labels) with ``keys`` (``ZoneKey``): each
    RRset by every key whose role signs its type (``dnssec.role_signs``: a CSK everything,
    a KSK the DNSKEY/CDS/CDNSKEY sets, a ZSK the rest). ``published`` are the keys in the
    DNSKEY RRset (default: ``keys``; during a rollover also keys not or no longer
    signing), ``cds`` the keys listed in CDS/CDNSKEY (default: the SEP keys published)."""

    def __init__(self, apex, keys, settings: SigningSettings = SigningSettings(), *,
                 published=None, cds=None):
        keys = tuple(keys)
        if not any(key.signs(DNSKEY) for key in keys) or not any(
                key.signs(SOA) for key in keys):
            raise ValueError("a signed zone needs a key signing DNSKEY and one signing "
                             "its other RRsets (a CSK, or a KSK and a ZSK)")
        self.apex = tuple(label.lower() for label in apex)
        self.keys = keys
        self.published = tuple(published) if published is not None else keys
        self.settings = settings
        self.dnskey = tuple(key.dnskey for key in self.published)
        sep = (tuple(cds) if cds is not None
               else tuple(key for key in self.published if key.sep))
        self.cds = tuple(dnssec.ds_rdata(self.apex, key) for key in sep)
        self.cdnskey = tuple(key.dnskey for key in sep)
        self._cache = OrderedDict()
        self.signatures_made = 0
        self.cache_hits = 0

    def state(self) -> tuple:
        """What answers depend on: the tags signing, published and in CDS (a key
        schedule swaps the signer only when this changes)."""
        return (sorted(key.dnskey for key in self.keys), sorted(self.dnskey),
                sorted(self.cds))

    def adopt_counts(self, previous: "ZoneSigner") -> None:
        """Go on counting from ``previous`` (the signer this one replaces), so the
        exported counters never go back at a key change or a reload."""
        self.signatures_made += previous.signatures_made
        self.cache_hits += previous.cache_hits

    @property
    def cached_signatures(self) -> int:
        return len(self._cache)

    def apex_rrset(self, rtype: int) -> tuple:
        """The RDATAs of the DNSKEY, CDS or CDNSKEY RRset (RFC 7344 section 3)."""
        return {DNSKEY: self.dnskey, CDS: self.cds, CDNSKEY: self.cdnskey}.get(rtype, ())

    def keys_for(self, rtype: int) -> tuple:
        """The keys whose role signs RRsets of ``rtype`` (``dnssec.role_signs``)."""
        return tuple(key for key in self.keys if key.signs(rtype))

    def window(self, now: float) -> tuple[int, int]:
        settings = self.settings
        start = int(now) // settings.refresh * settings.refresh
        # Backdating the inception for slow clocks must not shorten the validity: with
        # the default skew of an hour, a 1-hour validity would expire at once.
        return start - settings.skew, start + settings.validity

    def rrsigs(self, owner, rtype: int, ttl: int, rdatas, now: float) -> list[bytes]:
        """RRSIG RDATAs (one per key whose role signs ``rtype``) over the RRset ``owner``/``rtype`` with Original TTL
        ``ttl`` and canonical ``rdatas``."""
        inception, expiration = self.window(now)
        rrset = dnssec.canonical_rrset(owner, rtype, ttl, rdatas)
        out = []
        for key in self.keys:
            if not key.signs(rtype):
                continue
            head = dnssec.rrsig_head(rtype, owner, ttl, inception, expiration, key,
                                     self.apex)
            out.append(head + self._signature(key, head + rrset))
        return out

    def _signature(self, key: ZoneKey, data: bytes) -> bytes:
        cache = self._cache
        digest = hashlib.blake2b(data, digest_size=16).digest()
        signature = cache.get(digest)
        if signature is not None:
            cache.move_to_end(digest)
            self.cache_hits += 1
            return signature
        signature = key.sign(data)
        self.signatures_made += 1
        cache[digest] = signature
        if len(cache) > self.settings.cache_entries:
            cache.popitem(last=False)
        return signature

    def sign_section(self, records: list, now: float) -> list:
        """``records`` (dnslib RRs of one section) with an RRSIG RR after each RRset."""
        groups = OrderedDict()
        for rr in records:
            owner = tuple(label.lower() for label in rr.rname.label)
            groups.setdefault((owner, rr.rtype), []).append(rr)
        out = []
        for (owner, rtype), rrs in groups.items():
            out += rrs
            if rtype == RRSIG:
                continue
            ttl = min(rr.ttl for rr in rrs)
            original = max(rr_original_ttl(rr) for rr in rrs)
            rdatas = [canonical_rdata(rr) for rr in rrs]
            for rdata in self.rrsigs(owner, rtype, original, rdatas, now):
                out.append(RR(rrs[0].rname, RRSIG, IN, ttl, RD(rdata)))
        return out

    def denial(self, owner: DNSLabel, types, ttl: int, now: float) -> list:
        """RFC 9824 compact denial at ``owner``: an NSEC whose next name is ``\\000.owner``
        (so it covers no other name: nothing of the zone's names is exposed), with
        ``types`` plus RRSIG and NSEC in its bitmap, and its RRSIGs."""
        labels = tuple(label.lower() for label in owner.label)
        rdata = dnssec.nsec_rdata((b"\x00",) + labels, set(types) | {RRSIG, NSEC})
        nsec = RR(owner, NSEC, IN, ttl, RD(rdata))
        return self.sign_section([nsec], now)


def nxname_types() -> set:
    """The bitmap of a name that does not exist (RFC 9824 section 3.2)."""
    return {NXNAME}


def rr_original_ttl(rr) -> int:
    """The TTL to sign: an RR carries it in ``original_ttl`` when its served TTL counts
    down (stored TXT values), else its TTL."""
    return getattr(rr, "original_ttl", rr.ttl)


def canonical_rdata(rr) -> bytes:
    """``rr``'s RDATA uncompressed with its embedded names lowercased (RFC 4034 section
    6.2, the types this server serves)."""
    data, rtype = rr.rdata, rr.rtype
    if rtype in _NAME_TYPES:
        return dnssec.wire_name(data.label.label)
    if rtype == SOA:
        return (dnssec.wire_name(data.mname.label) + dnssec.wire_name(data.rname.label)
                + struct.pack(">IIIII", *data.times))
    if rtype == MX:
        return struct.pack(">H", data.preference) + dnssec.wire_name(data.label.label)
    if rtype == SRV:
        return (struct.pack(">HHH", data.priority, data.weight, data.port)
                + dnssec.wire_name(data.target.label))
    buffer = DNSBuffer()
    data.pack(buffer)
    return bytes(buffer.data)
