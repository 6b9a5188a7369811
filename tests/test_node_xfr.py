"""Transfer configuration: the [[zones]] keys, the TSIG key files, node/public as shipped."""

import ipaddress
import pathlib

import pytest

from dmfdns.config import ConfigError, load_config, parse_config
from dmfdns.node_files import read_node_files

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZONE = ROOT / "zones" / "mesh.test.zone"
KEY_LINE = "hmac-sha256:xfr-key:" + "A" * 43 + "=\n"


def config_with(tmp_path, table: str, key_text: str | None = KEY_LINE):
    if key_text is not None:
        (tmp_path / "xfr.tsig").write_text(key_text)
    return parse_config(f'[[zones]]\nfile = "{ZONE}"\n{table}\n', base=tmp_path,
                        cwd=tmp_path)


def test_zone_table_keys_are_read(tmp_path):
    config = config_with(tmp_path, 'transfer_allow = ["127.0.0.1", "10.0.0.0/8"]\n'
                                   'tsig_key_file = "xfr.tsig"\n'
                                   'notify = ["127.0.0.1:5431"]')
    (source,) = config.zones
    assert source.transfer_allow == ("127.0.0.1/32", "10.0.0.0/8")
    assert source.tsig_key_file == tmp_path / "xfr.tsig"
    policy = read_node_files(config).transfers["mesh.test"]
    assert policy.allow == (ipaddress.ip_network("127.0.0.1/32"),
                            ipaddress.ip_network("10.0.0.0/8"))
    assert policy.keys[0].name == "xfr-key" and policy.notify_key is policy.keys[0]
    assert policy.notify == (("127.0.0.1", 5431),)


def test_without_transfer_keys_there_is_no_policy(tmp_path):
    config = config_with(tmp_path, "", key_text=None)
    assert read_node_files(config).transfers == {}


@pytest.mark.parametrize("table, message", [
    ('transfer_allow = ["not-an-address"]', "transfer_allow"),
    ('notify = ["127.0.0.1:0"]', "port cannot be 0"),
    ('notify = ["127.0.0.1"]', "notify"),
    ('transfer_allowed = []', "unknown key 'transfer_allowed'"),
])
def test_bad_zone_tables_name_the_key(tmp_path, table, message):
    with pytest.raises(ConfigError, match=message):
        config_with(tmp_path, table)


@pytest.mark.parametrize("key_text, message", [
    ("hmac-sha256:xfr-key\n", "one line"),
    ("hmac-sha999:xfr-key:" + "A" * 43 + "=\n", "unknown TSIG algorithm"),
    (KEY_LINE + KEY_LINE, "expected one line"),
])
def test_bad_key_files_are_config_errors_naming_the_file(tmp_path, key_text, message):
    config = config_with(tmp_path, 'transfer_allow = ["127.0.0.1"]\n'
                                   'tsig_key_file = "xfr.tsig"', key_text)
    with pytest.raises(ConfigError, match=message) as error:
        read_node_files(config)
    assert "xfr.tsig" in str(error.value)


def test_a_missing_key_file_is_a_config_error(tmp_path):
    config = config_with(tmp_path, 'transfer_allow = ["127.0.0.1"]\n'
                                   'tsig_key_file = "absent.tsig"', None)
    with pytest.raises(ConfigError, match="absent.tsig: cannot read"):
        read_node_files(config)


def test_ipv6_secondaries_are_accepted(tmp_path):
    config = config_with(tmp_path, 'notify = ["[::1]:5431", "127.0.0.1:5432"]')
    policy = read_node_files(config).transfers["mesh.test"]
    assert policy.notify == (("::1", 5431), ("127.0.0.1", 5432))


def test_node_public_allows_loopback_transfers_with_its_key_and_notifies_two(tmp_path):
    config = load_config(ROOT / "node" / "public" / "node.toml", cwd=tmp_path)
    policy = read_node_files(config).transfers["mesh.test"]
    assert policy.allow == (ipaddress.ip_network("127.0.0.1/32"),)
    assert [key.name for key in policy.keys] == ["rehearsal-xfr"]
    assert policy.notify == (("127.0.0.1", 5431), ("127.0.0.1", 5432))
