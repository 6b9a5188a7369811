"""Key roles and the RFC 7583 rollover schedule (dns/key_schedule.py), the KSK/ZSK split in
the signer, the key files with their times and the schedule that swaps the running
responder's signer (node_dnssec.py), and ``dmfdns dnssec rollover|ds-seen|status``."""

import dataclasses
import io
import json
import pathlib

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rrset
import pytest

from dmfdns.cli import run
from dmfdns.config import parse_config
from dmfdns.dns import dnssec, key_schedule
from dmfdns.dns.key_schedule import KeyTimes, RolloverError, Timings
from dmfdns.dns.signer import ZoneSigner
from dmfdns.node_dnssec import (KeySchedule, key_dir, load_managed, zone_signers,
                                zone_timings)
from dmfdns.node_files import load_zones

T0 = 1_800_000_000.0
APEX = (b"mesh", b"test")
TIMINGS = Timings(dnskey_ttl=3600, max_ttl=86400, ds_ttl=7200, propagation=300,
                  parent_propagation=1800, publish_safety=600, retire_safety=900)
ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_intervals_are_rfc_7583s():
    assert TIMINGS.ipub == 300 + 3600 + 600                # Dprp + TTLkey + safety
    assert TIMINGS.iret == 300 + 86400 + 900               # Dsgn(0) + Dprp + TTLsig
    assert TIMINGS.ipub_parent == 1800 + 7200 + 600        # DprpP + TTLds + safety
    assert TIMINGS.iret_key == 300 + 3600 + 900
    stored = dataclasses.replace(TIMINGS, signing_delay=1200)     # signatures kept on disk
    assert stored.iret == 1200 + TIMINGS.iret and stored.ipub == TIMINGS.ipub


def test_zsk_pre_publication_switches_signing_after_ipub_and_removes_after_iret():
    keys = [key_schedule.initial(1, "ksk", T0 - 99), key_schedule.initial(2, "zsk", T0 - 99)]
    planned = key_schedule.roll_zsk(keys, 3, T0, TIMINGS)
    old, new = planned[1], planned[2]
    switch = T0 + TIMINGS.ipub
    assert new.published(T0) and not new.signing(T0) and old.signing(T0)
    assert new.signing(switch) and not old.signing(switch) and old.published(switch)
    assert not old.published(switch + TIMINGS.iret) and new.published(switch + TIMINGS.iret)
    assert old.state(switch + 1) == "retired" and old.state(switch + TIMINGS.iret) == "removed"
    assert planned[0] == keys[0]                            # the KSK is untouched
    with pytest.raises(RolloverError, match="already under way"):
        key_schedule.roll_zsk(planned, 4, T0 + 1, TIMINGS)
    # Once the old key is gone, the next rollover may start.
    assert len(key_schedule.roll_zsk(planned, 4, switch + TIMINGS.iret, TIMINGS)) == 4


def test_zsk_rollover_of_a_csk_zone_is_refused():
    with pytest.raises(RolloverError, match="no ZSK"):
        key_schedule.roll_zsk([key_schedule.initial(1, "csk", T0)], 2, T0, TIMINGS)


def test_ksk_double_ds_waits_for_the_parent_then_publishes_and_retires():
    keys = [key_schedule.initial(1, "ksk", T0 - 99), key_schedule.initial(2, "zsk", T0 - 99)]
    started = key_schedule.roll_sep(keys, "ksk", 3, T0)
    new = started[2]
    assert new.waiting_for_ds() and not new.published(T0 + 10**6) and new.in_cds(T0)
    assert key_schedule.next_steps(started, T0)[0][0] is None       # the operator's turn
    with pytest.raises(RolloverError, match="already under way"):
        key_schedule.roll_sep(started, "ksk", 4, T0)
    with pytest.raises(RolloverError, match="not waiting"):
        key_schedule.ds_seen(started, 1, T0, TIMINGS)
    seen = T0 + 5000
    planned = key_schedule.ds_seen(started, 3, seen, TIMINGS)
    old, new = planned[0], planned[2]
    publish = seen + TIMINGS.ipub_parent
    assert not new.published(publish - 1) and new.published(publish) and new.signing(publish)
    # Both KSKs sign the DNSKEY RRset until every cache has the new one, then the old goes.
    assert old.signing(publish) and old.published(publish + TIMINGS.iret_key - 1)
    assert not old.published(publish + TIMINGS.iret_key) and old.in_cds(publish)
    assert not old.in_cds(publish + TIMINGS.iret_key)
    assert planned[1] == keys[1]
    assert key_schedule.next_change(planned, seen) == publish


def test_csk_double_ds_pre_publishes_before_signing_the_data():
    keys = [key_schedule.initial(1, "csk", T0 - 99)]
    planned = key_schedule.ds_seen(key_schedule.roll_sep(keys, "csk", 2, T0), 2, T0, TIMINGS)
    old, new = planned
    publish = T0 + TIMINGS.ipub_parent
    switch = publish + TIMINGS.ipub
    assert new.published(publish) and not new.signing(publish) and old.signing(publish)
    assert new.signing(switch) and not old.signing(switch) and old.published(switch)
    assert old.removed(switch + TIMINGS.iret)


def test_at_every_instant_of_both_rollovers_some_key_signs_each_role():
    keys = [key_schedule.initial(1, "ksk", T0), key_schedule.initial(2, "zsk", T0)]
    keys = key_schedule.roll_zsk(keys, 3, T0, TIMINGS)
    keys = key_schedule.ds_seen(key_schedule.roll_sep(keys, "ksk", 4, T0), 4, T0, TIMINGS)
    for step in range(0, 200_000, 250):
        now = T0 + step
        signing = [key for key in keys if key.signing(now)]
        assert {key.role for key in signing} == {"ksk", "zsk"}, now
        assert all(key.published(now) for key in signing), now


# --- the signer ------------------------------------------------------------------------

def _rrset(name, rtype, ttl, wires):
    out = dns.rrset.RRset(dns.name.from_text(name), dns.rdataclass.IN, rtype)
    for wire in wires:
        out.add(dns.rdata.from_wire(dns.rdataclass.IN, rtype, wire, 0, len(wire)), ttl)
    return out


def test_a_ksk_signs_only_the_key_sets_and_a_zsk_the_rest():
    ksk, zsk = dnssec.ZoneKey.generate(role="ksk"), dnssec.ZoneKey.generate(role="zsk")
    assert (ksk.flags, zsk.flags) == (257, 256) and ksk.sep and not zsk.sep
    signer = ZoneSigner(APEX, [ksk, zsk])
    assert signer.apex_rrset(dnssec.CDS) == (dnssec.ds_rdata(APEX, ksk),)
    assert signer.apex_rrset(dnssec.CDNSKEY) == (ksk.dnskey,)
    keyring = {dns.name.from_text("mesh.test."):
               _rrset("mesh.test.", dnssec.DNSKEY, 3600, signer.dnskey)}
    for rtype, wires, tag in ((dnssec.DNSKEY, signer.dnskey, ksk.tag),
                              (dnssec.CDS, signer.cds, ksk.tag), (16, [b"\x02hi"], zsk.tag)):
        sigs = signer.rrsigs(APEX, rtype, 3600, wires, T0)
        assert len(sigs) == 1 and int.from_bytes(sigs[0][16:18], "big") == tag
        dns.dnssec.validate(_rrset("mesh.test.", rtype, 3600, wires),
                            _rrset("mesh.test.", dnssec.RRSIG, 3600, sigs), keyring, now=T0)
    with pytest.raises(ValueError, match="a KSK and a ZSK"):
        ZoneSigner(APEX, [zsk])
    with pytest.raises(ValueError, match="a KSK and a ZSK"):
        ZoneSigner(APEX, [ksk])


def test_a_pre_published_key_is_in_dnskey_but_signs_nothing():
    old, new = dnssec.ZoneKey.generate(), dnssec.ZoneKey.generate()
    signer = ZoneSigner(APEX, [old], published=[old, new], cds=[old, new])
    assert signer.dnskey == (old.dnskey, new.dnskey) and len(signer.cds) == 2
    assert len(signer.rrsigs(APEX, 16, 60, [b"\x01a"], T0)) == 1


# --- files, the running schedule, the commands ----------------------------------------

def write_config(tmp_path, layout="ksk-zsk") -> pathlib.Path:
    path = tmp_path / "node.toml"
    path.write_text(f"""[node]
data_dir = "{tmp_path / 'data'}"
[dns]
answer_ttl = 30
[[zones]]
file = "{ROOT / 'zones' / 'mesh.test.zone'}"
dnssec = true
dnssec_keys = "{layout}"
dnssec_propagation = "10s"
dnssec_parent_propagation = "20s"
dnssec_ds_ttl = "60s"
dnssec_publish_safety = "5s"
dnssec_retire_safety = "7s"
""")
    return path


def cli(now, *argv):
    out, err = io.StringIO(), io.StringIO()
    status = run(list(argv), now=now, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


class FakeResponder:
    """The one thing the schedule uses of a responder: its signers."""

    def __init__(self, signers):
        self.signers = dict(signers)
        self.swaps = 0

    def set_signer(self, origin, signer):
        self.signers[origin] = signer
        self.swaps += 1


def test_keys_are_written_with_their_times_and_the_schedule_follows_a_zsk_rollover(tmp_path):
    path = write_config(tmp_path)
    config = parse_config(path.read_text(), base=tmp_path, cwd=tmp_path)
    zones = load_zones(config)
    signers = zone_signers(config, zones, T0)
    keys = load_managed(config.node.data_dir, "mesh.test")
    assert sorted(m.times.role for m in keys) == ["ksk", "zsk"]
    meta = json.loads(keys[0].path.with_suffix(".json").read_text())
    assert meta["publish"] == meta["active"] == T0 and meta["remove"] is None
    responder = FakeResponder(signers)
    schedule = KeySchedule(config, zones, responder)
    schedule.tick(T0 + 1)
    assert responder.swaps == 0                      # nothing changed

    status, out, err = cli(T0 + 100, "dnssec", "rollover", "zsk", "mesh.test",
                           "--config", str(path))
    assert status == 0, err
    timings = zone_timings(config.zones[0], zones[0], 30)
    assert f"Ipub {timings.ipub:g} s" in out and "starts signing" in out
    schedule.tick(T0 + 101)
    signer = responder.signers["mesh.test"]
    assert len(signer.dnskey) == 3 and len(signer.keys) == 2 and responder.swaps == 1
    switch = T0 + 100 + timings.ipub
    schedule.tick(switch)
    new_zsk = max((m for m in load_managed(config.node.data_dir, "mesh.test")),
                  key=lambda m: m.times.created).key
    signing = {key.tag: key.role for key in responder.signers["mesh.test"].keys}
    assert signing[new_zsk.tag] == "zsk" and len(signing) == 2 and responder.swaps == 2
    schedule.tick(switch + timings.iret)
    assert len(responder.signers["mesh.test"].dnskey) == 2 and responder.swaps == 3
    status, out, _ = cli(switch + timings.iret, "dnssec", "status", "mesh.test",
                         "--config", str(path))
    assert out.count(": active") == 2 and ": removed" in out and "nothing planned" in out
    # The removed ZSK's files may go; the new one may not (no other ZSK signs now).
    status, _, err = cli(switch + timings.iret, "dnssec", "retire", "mesh.test",
                         str(new_zsk.tag), "--config", str(path))
    assert status != 0 and "cannot sign without" in err
    old_zsk = next(m.times.tag for m in load_managed(config.node.data_dir, "mesh.test")
                   if m.times.removed(switch + timings.iret))
    status, _, _ = cli(switch + timings.iret, "dnssec", "retire", "mesh.test", str(old_zsk),
                       "--config", str(path))
    assert status == 0 and len(load_managed(config.node.data_dir, "mesh.test")) == 2


def test_cli_ksk_double_ds_prints_the_new_ds_and_waits_for_ds_seen(tmp_path):
    path = write_config(tmp_path)
    assert cli(T0, "dnssec", "keygen", "mesh.test", "--config", str(path))[0] == 0
    status, _, err = cli(T0, "dnssec", "keygen", "mesh.test", "--add", "--config", str(path))
    assert status != 0 and "rollover" in err
    status, out, err = cli(T0 + 10, "dnssec", "rollover", "ksk", "mesh.test",
                           "--config", str(path))
    assert status == 0 and "ds-seen" in err
    ds_line = out.splitlines()[0]
    new_tag = int(ds_line.split(" IN DS ")[1].split()[0])
    assert "waiting for DS" in out and "now, by you" in out
    _, ds_out, _ = cli(T0 + 11, "dnssec", "ds", "mesh.test", "--config", str(path))
    assert ds_line in ds_out and ds_out.count(" IN DS ") == 2     # both during the overlap
    status, _, err = cli(T0 + 12, "dnssec", "rollover", "ksk", "mesh.test",
                         "--config", str(path))
    assert status != 0 and "already under way" in err
    status, _, err = cli(T0 + 12, "dnssec", "ds-seen", "mesh.test", "1", "--config", str(path))
    assert status != 0 and "not waiting" in err
    status, out, _ = cli(T0 + 20, "dnssec", "ds-seen", "mesh.test", str(new_tag),
                         "--config", str(path))
    assert status == 0 and f"KSK {new_tag}: published in DNSKEY" in out
    # DprpP 20 + TTLds 60 + publish safety 5 after the DS was seen.
    times = {m.times.tag: m.times for m in load_managed(tmp_path / "data", "mesh.test")}
    assert times[new_tag].publish == T0 + 20 + 85
    status, _, err = cli(T0 + 30, "dnssec", "rollover", "csk", "mesh.test",
                         "--config", str(path))
    assert status != 0 and "no CSK" in err


def test_cli_keygen_makes_the_layouts_keys_and_bad_metadata_is_reported(tmp_path):
    path = write_config(tmp_path, "csk")
    status, _, err = cli(T0, "dnssec", "keygen", "mesh.test", "--config", str(path))
    assert status == 0 and err.count("created") == 1 and "CSK" in err
    folder = key_dir(tmp_path / "data", "mesh.test")
    next(folder.glob("*.json")).write_text('{"role": "boss"}')
    status, _, err = cli(T0, "dnssec", "status", "mesh.test", "--config", str(path))
    assert status != 0 and "role must be csk, ksk or zsk" in err


def test_a_broken_key_file_keeps_the_running_signer_and_is_logged_once(tmp_path):
    from twisted.logger import globalLogPublisher
    path = write_config(tmp_path)
    config = parse_config(path.read_text(), base=tmp_path, cwd=tmp_path)
    zones = load_zones(config)
    responder = FakeResponder(zone_signers(config, zones, T0))
    schedule = KeySchedule(config, zones, responder)
    before = responder.signers["mesh.test"]
    next(key_dir(config.node.data_dir, "mesh.test").glob("*.json")).write_text("{")
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        for second in range(3):
            schedule.tick(T0 + second)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert responder.signers["mesh.test"] is before and responder.swaps == 0
    assert len([event for event in seen if event.get("log_namespace") == "dmfdns.dnssec"]) == 1


def test_a_node_started_mid_rollover_serves_the_state_of_that_instant(tmp_path):
    path = write_config(tmp_path)
    assert cli(T0, "dnssec", "keygen", "mesh.test", "--config", str(path))[0] == 0
    assert cli(T0 + 1, "dnssec", "rollover", "zsk", "mesh.test", "--config", str(path))[0] == 0
    config = parse_config(path.read_text(), base=tmp_path, cwd=tmp_path)
    zones = load_zones(config)
    timings = zone_timings(config.zones[0], zones[0], 30)
    keys = {m.times.tag: m.times for m in load_managed(config.node.data_dir, "mesh.test")}
    new_zsk = max(keys.values(), key=lambda times: times.created).tag
    for now, dnskeys, signing_new in ((T0 + 2, 3, False),
                                      (T0 + 1 + timings.ipub, 3, True),
                                      (T0 + 1 + timings.ipub + timings.iret, 2, True)):
        signer = zone_signers(config, zones, now, create=False)["mesh.test"]
        assert len(signer.dnskey) == dnskeys, now
        assert (new_zsk in {key.tag for key in signer.keys}) == signing_new, now
