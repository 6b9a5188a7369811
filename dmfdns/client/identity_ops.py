"""Identity records on the user side: publish one's own, fetch and pin a contact's.

An identity is published either hashed, at ``id-{hex16(H(username))}.{zone}``, or
zone-anchored, at ``dmp.{identity_domain}`` for the address ``user@identity_domain``
(docs/wire-format.md §3, 4.3, 9.3). Ours advertises protocol versions 1 and 2 so senders
wrap their messages in the DMPv2 envelope and we can show who sent them (section 7).

Fetching ``user@host`` looks at ``dmp.{host}``, then ``id-{hex16(user)}.{host}``, then the
same with the username lowercased (the order of section 7); a record counts only if its
signature verifies and its username is the one asked for (case-insensitively). With a pinned
key the record must carry that key, which is how a contact's DMPv2 sender label is checked.
"""

from dataclasses import dataclass

from ..proto import identity, names, owners
from ..proto.keys import fingerprint
from .state import Contact, Profile

IDENTITY_TTL = 86400
ADVERTISED_VERSIONS = (1, 2)


class IdentityError(Exception):
    """An identity could not be found, verified or published (one line for the CLI)."""


def split_address(address: str) -> tuple[str, str]:
    """``("user", "host")`` of ``user@host``; the host loses one trailing dot and its case."""
    user, at, host = address.strip().partition("@")
    host = names.folded(host)
    if not at or not user or not host or "@" in host:
        raise IdentityError(f"{address!r} is not an address of the form user@domain")
    return user, host


def own_identity_owner(profile: Profile) -> str:
    if profile.identity_domain:
        return owners.identity_anchored(profile.identity_domain)
    return owners.identity_hashed(profile.username, profile.zone)


def own_identity_record(profile: Profile, keys, now: int) -> str:
    return identity.sign(profile.username, keys.x25519_public, keys.ed25519_public, int(now),
                         keys.signer, versions=ADVERTISED_VERSIONS)


async def publish_identity(net, profile: Profile, keys, now: int) -> str:
    """Publish our identity record; returns the owner name it went to."""
    owner = own_identity_owner(profile)
    await net.writer.publish(owner, own_identity_record(profile, keys, now), IDENTITY_TTL)
    return owner


def candidate_names(user: str, host: str) -> list[str]:
    found = [owners.identity_anchored(host), owners.identity_hashed(user, host)]
    lowered = owners.identity_hashed(user.lower(), host)
    if lowered not in found:
        found.append(lowered)
    return found


@dataclass(frozen=True)
class FoundIdentity:
    record: identity.Identity
    owner: str
    user: str
    host: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.record.x25519_pk, self.record.ed25519_spk)


async def find_identity(net, address: str, now: int,
                        expected_spk: bytes | None = None) -> FoundIdentity | None:
    """The first verifying identity for ``address`` (with ``expected_spk`` when given)."""
    user, host = split_address(address)
    for owner in candidate_names(user, host):
        values = await net.reader.read(owner)
        for value in values:
            record = identity.parse_and_verify(value, now=now, expected_spk=expected_spk)
            if record is not None and record.username.casefold() == user.casefold():
                return FoundIdentity(record, owner, user, host)
    return None


def pin(secrets, found: FoundIdentity, now: int) -> Contact:
    """Add or update the contact for ``found``; an existing block is kept."""
    contact = secrets.contact(f"{found.user}@{found.host}")
    if contact is None:
        contact = Contact(found.user, found.host, found.record.x25519_pk,
                          found.record.ed25519_spk, tuple(found.record.versions), added=int(now))
        secrets.contacts.append(contact)
        return contact
    contact.x25519 = found.record.x25519_pk
    contact.ed25519 = found.record.ed25519_spk
    contact.versions = tuple(found.record.versions)
    contact.revoked = False
    return contact


def contact_fingerprint(contact: Contact) -> str:
    return fingerprint(contact.x25519, contact.ed25519)
