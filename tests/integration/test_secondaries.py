"""NSD, Knot and BIND from Debian's packages as real secondaries of a dmfdns hidden
primary.

One primary (a ``dmfdns serve`` subprocess) and the three secondaries run for the module.
The tests check what an operator relies on: the first transfer completes, the secondaries
answer the same TXT sets and SOA as the primary, a write reaches them within 2 s by NOTIFY
and IXFR, a delete and an expiry disappear, serials match, and transfers without the key or
with a wrong key are refused.
"""

import dns.exception
import dns.query
import dns.rcode
import dns.tsig
import dns.xfr
import dns.zone
import pytest

from cluster_procs import wait_until
from secondaries import (ZONE, Primary, Secondary, free_ports, serial, server_path,
                         tsig_key, txt_set)

KINDS = ("knot", "nsd", "bind")
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci,
              pytest.mark.skipif(not all(server_path(kind) for kind in KINDS),
                                 reason="needs the Debian knot, nsd and bind9 packages "
                                        "(.ci/run installs them)")]

SAMPLE = 40


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("secondaries")
    ports = free_ports(len(KINDS))
    primary = Primary(root / "primary", ports)
    secondaries = [Secondary(root / kind, kind, port) for kind, port in zip(KINDS, ports)]
    procs = [primary, *secondaries]
    try:
        primary.start()
        for index in range(SAMPLE):
            primary.post(f"n{index}.{ZONE}", f"value {index}")
            if index % 4 == 0:
                primary.post(f"n{index}.{ZONE}", f"second value {index}")
        primary.post(f"long.{ZONE}", "x" * 600)           # several character-strings
        for secondary in secondaries:
            secondary.start(primary.dns_port)
        yield primary, secondaries
    finally:
        for proc in procs:
            proc.stop()


def in_step(primary, *secondaries, timeout=20.0, step=0.1):
    """Wait until every secondary reports the primary's serial; the seconds it took."""
    def caught_up():
        want = serial(primary.dns_port)
        return want is not None and all(serial(s.port) == want for s in secondaries)
    try:
        return wait_until(caught_up, timeout, step)
    except AssertionError:
        logs = "\n".join(f"--- {s.label}\n{s.tail()}" for s in (primary,) + secondaries)
        raise AssertionError(f"secondaries not in step with serial "
                             f"{serial(primary.dns_port)}: "
                             f"{[serial(s.port) for s in secondaries]}\n{logs}") from None


def test_first_transfer_completes_and_answers_match(deployment):
    primary, secondaries = deployment
    in_step(primary, *secondaries)
    names = [f"n{index}.{ZONE}" for index in range(SAMPLE)] + [f"long.{ZONE}",
                                                                f"absent.{ZONE}"]
    for name in names:
        expected = txt_set(primary.dns_port, name)
        for secondary in secondaries:
            assert txt_set(secondary.port, name) == expected, (secondary.kind, name)
    for secondary in secondaries:
        assert txt_set(secondary.port, f"n0.{ZONE}") == {"value 0", "second value 0"}
        assert txt_set(secondary.port, f"long.{ZONE}") == {"x" * 600}


def _all_answer(secondaries, name, expected):
    return lambda: all(txt_set(s.port, name) == expected for s in secondaries)


def test_a_write_reaches_both_within_two_seconds_by_notify_and_ixfr(deployment):
    primary, secondaries = deployment
    in_step(primary, *secondaries)
    before = _ixfr_incremental(primary)
    primary.post(f"fresh.{ZONE}", "just written")
    took = wait_until(_all_answer(secondaries, f"fresh.{ZONE}",
                                   frozenset({"just written"})), 2.0, 0.05)
    assert took <= 2.0
    assert _ixfr_incremental(primary) > before        # by IXFR, not a full transfer
    assert _metric(primary, "dmfdns_notify_total", 'event="acknowledged"') >= len(KINDS)
    in_step(primary, *secondaries, timeout=5)


def test_a_delete_disappears(deployment):
    primary, secondaries = deployment
    in_step(primary, *secondaries)
    primary.delete(f"n1.{ZONE}", "value 1")
    wait_until(_all_answer(secondaries, f"n1.{ZONE}", None), 5.0, 0.05)
    primary.delete(f"n4.{ZONE}", "second value 4")     # one of two values
    wait_until(_all_answer(secondaries, f"n4.{ZONE}", frozenset({"value 4"})),
               5.0, 0.05)
    in_step(primary, *secondaries, timeout=5)


def test_an_expiry_disappears(deployment):
    primary, secondaries = deployment
    primary.post(f"brief.{ZONE}", "two seconds", ttl=2)
    wait_until(_all_answer(secondaries, f"brief.{ZONE}",
                            frozenset({"two seconds"})), 5.0, 0.05)
    # Expired after 2 s, swept within 0.5 s more, then NOTIFY and IXFR remove it.
    wait_until(_all_answer(secondaries, f"brief.{ZONE}", None), 8.0, 0.1)
    assert txt_set(primary.dns_port, f"brief.{ZONE}") is None
    in_step(primary, *secondaries, timeout=5)


def test_serials_match_after_a_burst(deployment):
    primary, secondaries = deployment
    for index in range(30):
        primary.post(f"burst{index}.{ZONE}", f"burst {index}")
    in_step(primary, *secondaries, timeout=10)
    for secondary in secondaries:
        assert txt_set(secondary.port, f"burst29.{ZONE}") == {"burst 29"}
        assert txt_set(secondary.port, f"burst0.{ZONE}") == {"burst 0"}


def test_transfers_without_or_with_a_wrong_key_are_refused(deployment):
    primary = deployment[0]
    with pytest.raises(dns.xfr.TransferError) as refused:
        dns.zone.from_xfr(dns.query.xfr("127.0.0.1", ZONE, port=primary.dns_port,
                                        timeout=5))
    assert refused.value.rcode == dns.rcode.REFUSED
    wrong = tsig_key(secret="d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZyE=")
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.zone.from_xfr(dns.query.xfr("127.0.0.1", ZONE, port=primary.dns_port,
                                        keyring=wrong, keyname=wrong.name, timeout=5))
    unknown = tsig_key(name="other-key")
    with pytest.raises(dns.tsig.PeerBadKey):
        dns.zone.from_xfr(dns.query.xfr("127.0.0.1", ZONE, port=primary.dns_port,
                                        keyring=unknown, keyname=unknown.name, timeout=5))
    zone = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", ZONE, port=primary.dns_port,
                                           keyring=tsig_key(), keyname=tsig_key().name,
                                           timeout=5))
    assert zone.get_rdataset(f"n0.{ZONE}.", "TXT") is not None
    assert 'result="refused"' in primary.metrics()


def _metric(primary, name: str, *labels: str) -> float:
    for line in primary.metrics().splitlines():
        if line.startswith(name + "{") and all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _ixfr_incremental(primary) -> float:
    return _metric(primary, "dmfdns_xfr_requests_total", 'kind="ixfr"',
                   'result="incremental"')


def test_the_serial_and_the_journal_survive_a_restart_of_the_primary(deployment):
    primary, secondaries = deployment
    in_step(primary, *secondaries)
    before = serial(primary.dns_port)
    primary.stop()
    primary.start()
    assert serial(primary.dns_port) == before             # monotonic across restarts
    primary.post(f"after-restart.{ZONE}", "still incremental")
    wait_until(_all_answer(secondaries, f"after-restart.{ZONE}",
                            frozenset({"still incremental"})), 5.0, 0.05)
    assert serial(primary.dns_port) > before
    assert _ixfr_incremental(primary) >= 1                # counters restart at zero
    in_step(primary, *secondaries, timeout=5)
