"""Fakes for the client's unit tests: an in-memory mesh and users without Argon2."""

from types import SimpleNamespace

from twisted.internet import defer

from dmfdns.client.state import Contact, Profile, Secrets
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.signing import sha256

NOW = 1_800_000_000


class FakeMesh:
    """Names -> values, read and written synchronously; records every write."""

    def __init__(self):
        self.records = {}
        self.writes = []
        self.deletes = []
        self.unreadable = set()
        self.updates = []
        self.claims = True          # the nodes take claims

    def read(self, name):
        if name in self.unreadable:
            from dmfdns.client.resolver import ReadError
            return defer.fail(ReadError(f"{name}: unreadable"))
        return defer.succeed(list(self.records.get(name.lower(), [])))

    def publish(self, name, value, ttl):
        self.writes.append((name, value, ttl))
        values = self.records.setdefault(name.lower(), [])
        if value not in values:
            values.append(value)
        return defer.succeed(1)

    def delete(self, name, value):
        self.deletes.append((name, value))
        values = self.records.get(name.lower(), [])
        if value in values:
            values.remove(value)
        return defer.succeed(1)

    def drain(self):
        return defer.succeed(None)

    def close(self):
        return defer.succeed(None)

    def names(self, prefix):
        return sorted(n for n in self.records if n.startswith(prefix) and self.records[n])

    def send(self, server, zone, ops, key=None):
        """The UpdateSender side: an unsigned claim UPDATE lands in the mesh."""
        self.updates.append((server, zone, tuple(ops)))
        for kind, name, value, ttl in ops:
            self.publish(name, value, ttl)
        return defer.succeed(0)

    @property
    def net(self):
        return SimpleNamespace(reader=self, writer=self, updates=self,
                               claim_servers=["fake-node"] if self.claims else [],
                               claim_zones=_Everything())


class _Everything:
    def __contains__(self, item):
        return True


def make_user(name: str, zone: str = "mesh.test", **profile_fields):
    keys = UserKeys.from_x25519_private(sha256(f"test-user/{name}".encode()))
    profile = Profile(username=name, zone=zone, kdf_salt=bytes(32), state_salt=bytes(32),
                      x25519_public=keys.x25519_public, ed25519_public=keys.ed25519_public,
                      **profile_fields)
    return profile, Secrets(x25519_private=keys.x25519_private)


def pin_each_other(a, b, versions=(1, 2)):
    """Pin user b in a's contacts (both are (profile, state) pairs)."""
    profile_b, state_b = b
    keys = state_b.keys
    contact = Contact(profile_b.username, profile_b.home_domain, keys.x25519_public,
                      keys.ed25519_public, tuple(versions))
    a[1].contacts.append(contact)
    return contact
