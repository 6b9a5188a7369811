"""First contact through a three-node cluster of public nodes (``node/public/`` copies as
``dmfdns serve`` subprocesses, syncing with each other): strangers reach each other through
a claim and the recipient's intro queue, and the reply goes back. Between two dmfdns users
(the ``dmfdns`` CLI: one with a TSIG key at n1, one with a token at n3), and between a dmfdns
user and a ``dnsmesh`` 0.7.5 user (a token at n2), in both directions. Every user writes to
its home node only (credentials are per node) and the cluster replicates.
"""

import os
import re
import subprocess
import sys
import time

import pytest

from public_node import PublicNode
from test_public_dnsmesh import User as DnsmeshUser
from dnsmesh_support import reference_bin

pytestmark = pytest.mark.slow     # about 3 minutes: dozens of CLI runs, each deriving keys
SYNC_TOKEN = "first-contact-sync-token"
DEADLINE = 60.0


@pytest.fixture
def cluster(tmp_path):
    reference_bin()
    nodes = [PublicNode(tmp_path / f"n{i}", node_id=f"n{i}") for i in (1, 2, 3)]
    for node in nodes:
        peers = ", ".join(f'"{other.url}"' for other in nodes if other is not node)
        node.add_config(f'[cluster]\nsync_token = "{SYNC_TOKEN}"\npeers = [{peers}]\n'
                        'sync_interval = "0.3s"\nfullset_interval = "5s"')
    for node in nodes:
        node.start()
    yield nodes
    for node in nodes:
        node.stop()


class DmfdnsUser:
    """The ``dmfdns`` client CLI with its own ``DMFDNS_HOME``."""

    def __init__(self, home, username):
        self.home, self.username = home, username
        self.env = dict(os.environ, DMFDNS_HOME=str(home),
                        DMFDNS_PASSPHRASE=f"{username} passphrase")

    def run(self, *args, check=True):
        result = subprocess.run([sys.executable, "-m", "dmfdns", *args], env=self.env,
                                capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def create(self, nodes, *, tsig=False):
        home_node = nodes[0]
        args = []
        for node in nodes:
            args += ["--node", f"{node.url},127.0.0.1:{node.dns_port}"]
        self.run("identity", "init", self.username, *args)
        register = ["register", home_node.url]
        if tsig:
            register += ["--tsig", "--dns", f"127.0.0.1:{home_node.dns_port}"]
        self.run(*register)
        self.run("identity", "publish")
        self.run("prekeys", "refresh")
        return self

    def until(self, predicate, what):
        """Poll ``recv`` until ``predicate(stdout)``; the output of the last poll."""
        deadline = time.monotonic() + DEADLINE
        while True:
            out = self.run("recv").stdout + self.run("intro", "list").stdout
            if predicate(out):
                return out
            assert time.monotonic() < deadline, f"{self.username}: {what} never came: {out}"
            time.sleep(0.5)


def dnsmesh_until(user, predicate, what):
    """Poll ``dnsmesh recv`` (which also fills its intro queue) until ``predicate`` holds
    for its output and the intro list; the output of the last poll."""
    deadline = time.monotonic() + DEADLINE
    while True:
        out = user.run("recv").stdout + user.run("intro", "list").stdout
        if predicate(out):
            return out
        assert time.monotonic() < deadline, f"{user.username}: {what} never came: {out}"
        time.sleep(0.5)


def fetch_until(user, address, *extra):
    deadline = time.monotonic() + DEADLINE
    while user.run("identity", "fetch", address, *extra, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{address} never replicated"
        time.sleep(0.5)


def test_first_contact_between_dmfdns_users_and_with_a_dnsmesh_user(cluster, tmp_path):
    n1, n2, n3 = cluster
    amy = DmfdnsUser(tmp_path / "amy", "amy").create([n1, n2, n3], tsig=True)
    ben = DmfdnsUser(tmp_path / "ben", "ben").create([n3])
    cat = DnsmeshUser(n2, tmp_path / "cat", "cat").init().register_token().publish()

    # dmfdns -> dmfdns: amy knows ben, ben has never heard of amy.
    fetch_until(amy, "ben@mesh.test", "--add")
    sent = amy.run("send", "ben@mesh.test", "hello ben, this is amy").stdout
    assert "sent" in sent
    ben.until(lambda o: "hello ben, this is amy" in o, "amy's intro")
    assert "hello ben, this is amy" in ben.run("intro", "list").stdout   # not the inbox
    ben.run("intro", "accept", "1")
    ben.run("send", "amy@mesh.test", "hello amy, ben here")
    amy.until(lambda o: "hello amy, ben here" in o, "ben's reply")

    # dmfdns -> dnsmesh: amy writes to cat, a stranger to her.
    fetch_until(amy, "cat@mesh.test", "--add")
    amy.run("send", "cat@mesh.test", "hello cat, amy here")
    listing = dnsmesh_until(cat, lambda o: "hello cat, amy here" in o, "amy's intro")
    intro_id = re.search(r"^#(\d+)\s", listing, re.M).group(1)
    cat.run("intro", "trust", intro_id, "--label", "amy", "--username", "amy")
    cat.run("identity", "fetch", "amy", "--add")
    cat.run("send", "amy", "hello amy, cat here")
    amy.until(lambda o: "hello amy, cat here" in o, "cat's reply")

    # dnsmesh -> dmfdns: cat writes to ben, a stranger to her.
    cat.run("identity", "fetch", "ben", "--add")
    cat.run("send", "ben", "hello ben, cat here")
    ben.until(lambda o: "hello ben, cat here" in o, "cat's intro")
    listing = ben.run("intro", "list").stdout
    number = re.search(r"^\s*(\d+)[.)]?\s.*", listing, re.M)
    ben.run("intro", "accept", number.group(1) if number else "1")
    fetch_until(ben, "cat@mesh.test", "--add")
    ben.run("send", "cat@mesh.test", "hello cat, ben here")
    assert "hello cat, ben here" in dnsmesh_until(
        cat, lambda o: "hello cat, ben here" in o, "ben's reply")

    # The claims went through the nodes' unsigned-UPDATE path.
    assert sum(node.metric("dmfdns_claims_accepted_total") for node in cluster) >= 3
