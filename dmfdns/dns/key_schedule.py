"""The life of a zone's DNSSEC keys in time: when each key is published in the DNSKEY
RRset, signs, stops signing and is removed, and how the two rollovers set those times
(RFC 7583; RFC 6781 section 4.1). Pure: every function takes ``now``; no files, no clock.

A key's times are planned when a rollover starts (or when the parent is seen to publish
a DS), so the state of every key at any instant is a function of ``now`` alone:

* published while ``publish <= now < remove``; signing while ``active <= now < retire``;
* a KSK or CSK waiting for its DS at the parent has no publish time until the operator
  says the parent publishes it (``ds_seen``);
* CDS/CDNSKEY list the SEP keys not yet removed, the waiting one included, so a parent
  scanning for CDS (RFC 7344, RFC 8078) adds its DS, and drops the old one once it is gone.

The two rollovers:

* **ZSK pre-publication** (RFC 7583 section 3.2.1; RFC 6781 4.1.1.1): the new ZSK is
  published now and signs from ``now + Ipub``, when every cache holding the DNSKEY RRset
  has the new key; the old ZSK stops signing then and is removed ``Iret`` later, once no
  cache holds a signature by it.
* **KSK/CSK double-DS** (RFC 7583 section 3.3.2; RFC 6781 4.1.2): the new key is made but
  not published; its DS goes to the parent beside the old one. When the operator says the
  parent serves both (``ds_seen``), after ``IpubP`` (every cache has the DS set with both)
  the new key is published. A KSK signs the DNSKEY RRset from then on and the old KSK is
  removed once the new DNSKEY RRset has reached every cache (``Ipub``: the DNSKEY RRset
  stays signed by both in between). A CSK also signs the zone's data, so it waits ``Ipub``
  after being published before it signs (pre-publication of a ZSK), and the old CSK is
  removed ``Iret`` after it stops signing. The old DS can leave the parent after that.
"""

import dataclasses
from dataclasses import dataclass

from .dnssec import CSK, KSK, ZSK


class RolloverError(ValueError):
    """A rollover step that cannot be taken now (the message says why)."""


@dataclass(frozen=True)
class Timings:
    """The RFC 7583 section 2 variables of one zone, in seconds."""

    dnskey_ttl: int              # TTLkey: the DNSKEY RRset's TTL
    max_ttl: int                 # TTLsig: the longest TTL of any signed RRset or denial
    ds_ttl: int                  # TTLds: the DS TTL at the parent
    propagation: float           # Dprp: until every server of the zone serves a change
    parent_propagation: float    # DprpP: the same for the parent's servers
    publish_safety: float = 0.0  # a margin added to every publication interval
    retire_safety: float = 0.0   # a margin added to every retire interval
    signing_delay: float = 0.0   # Dsgn: until every RRset is re-signed by a new key

    @property
    def ipub(self) -> float:
        """A key published now is in every cached DNSKEY RRset after this (3.2.1)."""
        return self.propagation + self.dnskey_ttl + self.publish_safety

    @property
    def iret(self) -> float:
        """A key that stops signing now has no signature left in any cache after this
        (3.2.1: Dsgn + Dprp + TTLsig; Dsgn is 0 while every signature is made when an
        answer is, since the switch is then at once)."""
        return self.signing_delay + self.propagation + self.max_ttl + self.retire_safety

    @property
    def ipub_parent(self) -> float:
        """A DS the parent publishes now is in every cached DS RRset after this (3.3.2)."""
        return self.parent_propagation + self.ds_ttl + self.publish_safety

    @property
    def iret_key(self) -> float:
        """A DNSKEY RRset changed now has replaced every cached copy after this."""
        return self.propagation + self.dnskey_ttl + self.retire_safety


@dataclass(frozen=True)
class KeyTimes:
    """One key's role and planned times (seconds since the epoch; None: not planned)."""

    tag: int
    role: str
    created: float
    publish: float | None = None
    active: float | None = None
    retire: float | None = None
    remove: float | None = None
    ds_seen: float | None = None

    @property
    def sep(self) -> bool:
        return self.role != ZSK

    def published(self, now: float) -> bool:
        return _within(self.publish, self.remove, now)

    def signing(self, now: float) -> bool:
        return _within(self.active, self.retire, now)

    def removed(self, now: float) -> bool:
        return self.remove is not None and self.remove <= now

    def waiting_for_ds(self) -> bool:
        return self.sep and self.publish is None and self.ds_seen is None

    def in_cds(self, now: float) -> bool:
        return self.sep and not self.removed(now)

    def state(self, now: float) -> str:
        if self.removed(now):
            return "removed"
        if self.waiting_for_ds():
            return "waiting for DS"
        if self.signing(now):
            return "active"
        if self.published(now):
            return "retired" if self.retire is not None and self.retire <= now \
                else "published"
        return "scheduled"


def _within(start, end, now) -> bool:
    return start is not None and start <= now and (end is None or now < end)


def initial(tag: int, role: str, now: float) -> KeyTimes:
    """A zone's first key of ``role``: published and signing from ``now`` (no rollover)."""
    return KeyTimes(tag, role, now, publish=now, active=now)


def _in_play(keys, role: str, now: float) -> list:
    return [key for key in keys if key.role == role and not key.removed(now)]


def _current(keys, role: str, now: float) -> KeyTimes:
    """The one key of ``role`` signing with no rollover under way, or RolloverError."""
    live = _in_play(keys, role, now)
    busy = [key for key in live if not key.signing(now) or key.retire is not None]
    if busy or len(live) != 1:
        raise RolloverError(f"a {role.upper()} rollover is already under way "
                            f"(keys {', '.join(str(key.tag) for key in live)})"
                            if live else f"the zone has no {role.upper()}")
    return live[0]


def roll_zsk(keys, new_tag: int, now: float, timings: Timings) -> list[KeyTimes]:
    """Pre-publication: the new ZSK ``new_tag`` published now, signing after Ipub; the
    old one retired then and removed Iret later. Returns the zone's keys, updated."""
    old = _current(keys, ZSK, now)
    switch = now + timings.ipub
    new = KeyTimes(new_tag, ZSK, now, publish=now, active=switch)
    retired = dataclasses.replace(old, retire=switch, remove=switch + timings.iret)
    return [retired if key is old else key for key in keys] + [new]


def roll_sep(keys, role: str, new_tag: int, now: float) -> list[KeyTimes]:
    """Double-DS, first step: the new KSK or CSK ``new_tag`` exists, unpublished, until
    its DS is seen at the parent (``ds_seen``)."""
    if role not in (KSK, CSK):
        raise RolloverError(f"double-DS rolls a KSK or a CSK, not a {role.upper()}")
    _current(keys, role, now)
    return list(keys) + [KeyTimes(new_tag, role, now)]


def ds_seen(keys, tag: int, now: float, timings: Timings) -> list[KeyTimes]:
    """Double-DS, second step: the parent serves the new key's DS (beside the old) from
    ``now``: plan the new key's publication and the old key's retirement."""
    new = next((key for key in keys if key.tag == tag and key.waiting_for_ds()), None)
    if new is None:
        raise RolloverError(f"key {tag} is not waiting for its DS (see dmfdns dnssec status)")
    olds = [key for key in _in_play(keys, new.role, now) if key is not new]
    publish = now + timings.ipub_parent
    if new.role == KSK:
        active, retire = publish, publish + timings.iret_key
        remove = retire
    else:
        active = retire = publish + timings.ipub
        remove = retire + timings.iret
    planned = {new.tag: dataclasses.replace(new, ds_seen=now, publish=publish,
                                            active=active)}
    for old in olds:
        planned[old.tag] = dataclasses.replace(old, retire=retire, remove=remove)
    return [planned.get(key.tag, key) for key in keys]


def next_steps(keys, now: float) -> list[tuple[float | None, str]]:
    """What happens next to each key, soonest first: ``(time, what)``; time None is a
    step the operator takes (a DS at the parent)."""
    steps = []
    for key in keys:
        name = f"{key.role.upper()} {key.tag}"
        if key.waiting_for_ds():
            steps.append((None, f"{name}: have the parent publish its DS beside the old "
                                f"one, then run 'dmfdns dnssec ds-seen ZONE {key.tag}'"))
            continue
        events = ((key.publish, "published in DNSKEY"), (key.active, "starts signing"),
                  (key.retire, "stops signing"),
                  (key.remove, "removed from DNSKEY" + (
                      "; then have the parent drop its DS" if key.sep else "")))
        upcoming = [(when, what) for when, what in events if when is not None and when > now]
        if upcoming:
            soonest = min(when for when, _ in upcoming)
            what = " and ".join(what for when, what in upcoming if when == soonest)
            steps.append((soonest, f"{name}: {what}"))
    return sorted(steps, key=lambda step: (step[0] is not None, step[0] or 0))


def next_change(keys, now: float) -> float | None:
    """The soonest planned time after ``now`` (for a scheduler), or None."""
    times = [when for key in keys for when in (key.publish, key.active, key.retire,
                                               key.remove) if when is not None and when > now]
    return min(times, default=None)
