"""``reload_node`` on an in-process node: what changes, what is kept, what is refused."""

import pytest
import pytest_twisted

from dmfdns.node_reload import changed_keys, reload_node
from dmfdns.config import load_config

from node_support import start_node

ZONE = """$ORIGIN {origin}.
$TTL 300
@ IN SOA ns1 hostmaster {serial} 3600 600 604800 60
@ IN NS ns1
ns1 IN A 127.0.0.1
"""


def write(tmp_path, *, zones=(("mesh.test", 1),), token="first-token", dns="127.0.0.1:0",
          answer_ttl=60):
    names = []
    for origin, serial in zones:
        (tmp_path / f"{origin}.zone").write_text(ZONE.format(origin=origin, serial=serial))
        names.append(f'"{origin}.zone"')
    (tmp_path / "operator.token").write_text(token + "\n")
    path = tmp_path / "node.toml"
    path.write_text(f"""zones = [{", ".join(names)}]
[node]
data_dir = "{tmp_path / 'data'}"
[store]
map_size = "64MiB"
[dns]
listen = ["{dns}"]
answer_ttl = {answer_ttl}
[http]
listen = ["127.0.0.1:0"]
auth_mode = "legacy"
operator_token_file = "operator.token"
""")
    return path


@pytest.fixture
def node(tmp_path):
    started = start_node(load_config(write(tmp_path)))
    yield started
    pytest_twisted.blockon(started.stopService())


def test_a_good_reload_applies_zones_token_and_safe_keys(node, tmp_path):
    path = write(tmp_path, zones=(("mesh.test", 2), ("other.test", 7)), token="second",
                 answer_ttl=30)
    result = reload_node(node, path)
    assert result.error is None and result.restart_needed == []
    assert "zone other.test added (serial 7)" in result.applied
    assert "zone mesh.test reloaded (serial 1 -> 2)" in result.applied
    assert "[dns] answer_ttl: 60 -> 30" in result.applied
    assert "operator token changed" in result.applied
    assert sorted(z.origin for z in node.responder.zones) == ["mesh.test", "other.test"]
    assert node.writes.zones == ("mesh.test", "other.test")
    assert node.http.records.auth.is_operator("second")
    assert not node.http.records.auth.is_operator("first-token")
    assert node.responder.settings.answer_ttl == 30 and node.config.dns.answer_ttl == 30


def test_keys_that_need_a_restart_are_reported_and_kept(node, tmp_path):
    before = node.config.dns.listen
    result = reload_node(node, write(tmp_path, dns="127.0.0.1:5999"))
    assert result.error is None and result.restart_needed == [("dns", "listen")]
    assert node.config.dns.listen == before


@pytest.mark.parametrize("breakage", ["zone", "config", "missing token"])
def test_a_bad_reload_changes_nothing(node, tmp_path, breakage):
    path = write(tmp_path, zones=(("mesh.test", 5),), token="second")
    if breakage == "zone":
        (tmp_path / "mesh.test.zone").write_text("$ORIGIN mesh.test.\n@ IN SOA x\n")
    elif breakage == "config":
        path.write_text("[dns]\nno_such_key = 1\n")
    else:
        (tmp_path / "operator.token").unlink()
    zones, config = list(node.responder.zones), node.config
    result = reload_node(node, path)
    assert result.error and result.applied == []
    assert node.responder.zones == zones and node.config is config
    assert node.http.records.auth.is_operator("first-token")


def test_changed_keys_compares_every_section(tmp_path):
    old = load_config(write(tmp_path))
    new = load_config(write(tmp_path, dns="127.0.0.1:1", answer_ttl=5))
    assert changed_keys(old, new) == [("dns", "listen"), ("dns", "answer_ttl")]
