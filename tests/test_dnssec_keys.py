"""A signed zone's keys in the data directory (node_dnssec.py), the per-zone DNSSEC config
keys and ``dmfdns dnssec keygen|ds``."""

import io
import pathlib
import stat

import dns.dnssec
import dns.rrset
import pytest

from dmfdns.cli import run
from dmfdns.config import ConfigError, parse_config
from dmfdns.node_dnssec import key_dir, load_keys, zone_signers
from dmfdns.node_files import load_zones
from dmfdns.node_lock import NodeError

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZONE = ROOT / "zones" / "mesh.test.zone"
NOW = 1_800_000_000.0


def write_config(tmp_path, zone_keys="dnssec = true") -> pathlib.Path:
    path = tmp_path / "node.toml"
    path.write_text(f"""[node]
data_dir = "{tmp_path / 'data'}"
[[zones]]
file = "{ZONE}"
{zone_keys}
""")
    return path


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = run(list(argv), now=NOW, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_first_start_makes_one_private_csk_and_reuses_it(tmp_path):
    config = parse_config(write_config(tmp_path).read_text(), base=tmp_path, cwd=tmp_path)
    zones = load_zones(config)
    signer = zone_signers(config, zones, NOW)["mesh.test"]
    files = sorted(key_dir(config.node.data_dir, "mesh.test").iterdir())
    assert [path.suffix for path in files] == [".json", ".pem"]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
    assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
    assert signer.keys[0].algorithm == 15 and signer.keys[0].flags == 257
    again = zone_signers(config, zones, NOW, create=False)["mesh.test"]
    assert again.dnskey == signer.dnskey


def test_a_worker_does_not_make_keys_and_a_bad_key_file_is_a_node_error(tmp_path):
    config = parse_config(write_config(tmp_path).read_text(), base=tmp_path, cwd=tmp_path)
    zones = load_zones(config)
    with pytest.raises(NodeError, match="no DNSSEC key"):
        zone_signers(config, zones, NOW, create=False)
    folder = key_dir(config.node.data_dir, "mesh.test")
    folder.mkdir(parents=True)
    (folder / "k1-15.pem").write_text("not a key")
    with pytest.raises(NodeError, match="k1-15.pem"):
        load_keys(config.node.data_dir, "mesh.test")


def test_unsigned_zones_get_no_signer(tmp_path):
    config = parse_config(write_config(tmp_path, "").read_text(), base=tmp_path, cwd=tmp_path)
    assert zone_signers(config, load_zones(config), NOW) == {}
    assert not (tmp_path / "data" / "dnssec").exists()


@pytest.mark.parametrize("keys,message", [
    ('dnssec = "yes"', "dnssec"),
    ('dnssec_algorithm = "rsasha1"', "dnssec_algorithm"),
    ('dnssec_validity = "1d"\ndnssec_refresh = "13h"', "half of dnssec_validity"),
    ('dnssec_validity = "10s"', "dnssec_validity"),
])
def test_bad_dnssec_keys_are_refused(tmp_path, keys, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(write_config(tmp_path, keys).read_text(), base=tmp_path, cwd=tmp_path)


def test_cli_keygen_then_ds_prints_a_ds_that_matches_the_dnskey(tmp_path):
    path = write_config(tmp_path, 'dnssec = true\ndnssec_algorithm = "ecdsap256sha256"')
    status, _, err = cli("dnssec", "ds", "mesh.test", "--config", str(path))
    assert status != 0 and "no DNSSEC key" in err
    status, _, err = cli("dnssec", "keygen", "mesh.test", "--config", str(path))
    assert status == 0 and "algorithm 13" in err
    status, _, err = cli("dnssec", "keygen", "mesh.test", "--config", str(path))
    assert status != 0 and "rollover" in err
    status, out, _ = cli("dnssec", "ds", "Mesh.Test.", "--config", str(path))
    assert status == 0
    ds_line, dnskey_line = out.splitlines()
    assert ds_line.startswith("mesh.test. 3600 IN DS ")
    ds = dns.rrset.from_text("mesh.test.", 3600, "IN", "DS", ds_line.split(" IN DS ")[1])
    dnskey = dns.rrset.from_text("mesh.test.", 3600, "IN", "DNSKEY",
                                 dnskey_line.split(" IN DNSKEY ")[1])
    assert dns.dnssec.make_ds("mesh.test.", dnskey[0], "SHA256") == ds[0]
    status, _, _ = cli("dnssec", "keygen", "mesh.test", "--add", "--config", str(path))
    status, out, _ = cli("dnssec", "ds", "mesh.test", "--config", str(path))
    assert status == 0 and len(out.splitlines()) == 4


def test_cli_ds_for_a_zone_not_configured(tmp_path):
    status, _, err = cli("dnssec", "ds", "other.test", "--config",
                         str(write_config(tmp_path)))
    assert status != 0 and "not a zone" in err


def test_cli_retire_moves_a_key_out_but_never_the_last(tmp_path):
    path = write_config(tmp_path)
    cli("dnssec", "keygen", "mesh.test", "--config", str(path))
    first = load_keys(tmp_path / "data", "mesh.test")[0]
    status, _, err = cli("dnssec", "retire", "mesh.test", str(first.tag), "--config", str(path))
    assert status != 0 and "cannot sign without key" in err
    cli("dnssec", "keygen", "mesh.test", "--add", "--config", str(path))
    status, _, err = cli("dnssec", "retire", "mesh.test", "7", "--config", str(path))
    assert status != 0 and "no DNSSEC key with tag 7" in err
    status, _, err = cli("dnssec", "retire", "mesh.test", str(first.tag), "--config", str(path))
    assert status == 0 and "within a second" in err
    left = load_keys(tmp_path / "data", "mesh.test")
    assert len(left) == 1 and left[0].tag != first.tag
    assert len(list((key_dir(tmp_path / "data", "mesh.test") / "retired").iterdir())) == 2
