"""The stored identities that may sign a prekey set (docs/decisions.md §6.2).

A prekey at ``prekeys.id-<hex12(H(username))>.<parent>`` does not say who signed it. The
identity of that username lives at ``id-<hex16(H(username))>.<parent>`` (docs/wire-format.md
§3), and hex12 is a prefix of hex16, so the identities that may own the set are the
values at the live names one label below ``parent`` starting with ``id-<hex12>``: one
ordered scan (``RecordStore.names_with_prefix``). This module only finds those values;
``dmfdns.proto.admission`` decodes them, keeps the ones whose username hashes to the same
12 characters, and verifies the prekey against their keys (any one of them suffices, so a
name whose RRset holds several identities admits prekeys signed by any of them).
"""

from typing import Iterable, Mapping

MAX_IDENTITY_NAMES = 4
"""Names read per prekey write. Two usernames whose hashes share the first 48 bits are a
collision nobody meets by chance, and making one for a given user costs about 2^48 hashes,
so more than one name is already rare and four is ample."""


def identity_values(store, hash12: str, parent: str, *, now: float) -> list[str]:
    """The live values at the ``id-<hash12>...`` names directly below ``parent``."""
    found = []
    for name in store.names_with_prefix(parent, "id-" + hash12, now=now,
                                        limit=MAX_IDENTITY_NAMES):
        found.extend(entry.value for entry in store.get(name, now))
    return found


def pending_identity_values(pending: Mapping[str, Iterable[str]], hash12: str,
                            parent: str) -> list[str]:
    """The values in ``pending`` (canonical name -> values admitted but not yet stored, as
    in one import or one sync batch) at the ``id-<hash12>...`` names directly below
    ``parent``: so a prekey is checked against an identity that arrives with it."""
    label = "id-" + hash12
    return [value for name, values in pending.items()
            if name.startswith(label) and name.partition(".")[2] == parent
            for value in values]

