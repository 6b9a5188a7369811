"""The TOML configuration: defaults, the shipped files, and precise errors."""

import dataclasses
import pathlib
import tomllib

import pytest

from dmfdns import config as cfg
from dmfdns.config import ConfigError, ListenAddress, load_config, parse_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "node" / "example.toml"


def parse(text, tmp_path, cwd=None):
    return parse_config(text, base=tmp_path, cwd=cwd or tmp_path)


def error_of(text, tmp_path) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, tmp_path)
    return str(info.value)


# --- the shipped defaults ----------------------------------------------------------------

def test_embedded_default_is_the_documented_quickstart(tmp_path):
    config = load_config(None, cwd=tmp_path)
    assert config.dns.listen == (ListenAddress("127.0.0.1", 5353),)
    assert config.http.listen == (ListenAddress("127.0.0.1", 8053),)
    assert config.node.data_dir == tmp_path / "dmfdns-data"
    assert [z.file.name for z in config.zones] == ["mesh.test.zone"]
    assert config.zones[0].file.is_file()
    assert config.dns.answer_ttl == 60 and config.dns.udp_max_payload == 1232


def test_example_toml_equals_the_embedded_default(tmp_path):
    example = load_config(EXAMPLE, cwd=tmp_path)
    default = load_config(None, cwd=tmp_path)
    assert dataclasses.replace(example, zones=()) == dataclasses.replace(default, zones=())
    assert [z.file.read_bytes() for z in example.zones] == \
        [z.file.read_bytes() for z in default.zones]
    assert example.zones[0].file == ROOT / "zones" / "mesh.test.zone"


def test_embedded_default_equals_the_dataclass_defaults(tmp_path):
    default = load_config(None, cwd=tmp_path)
    code = cfg.Config(node=cfg.NodeConfig(data_dir=tmp_path / "dmfdns-data"))
    assert dataclasses.replace(default, zones=()) == code


def test_example_toml_spells_out_every_key():
    data = tomllib.loads(EXAMPLE.read_text())
    assert set(data) == set(cfg.TOP_LEVEL_KEYS)
    for section, cls in cfg.SECTIONS.items():
        assert set(data[section]) == {f.name for f in dataclasses.fields(cls)}, section


def test_every_key_is_explained_in_the_example_and_the_docs():
    example = EXAMPLE.read_text()
    docs = (ROOT / "docs" / "configuration.md").read_text()
    for section, cls in cfg.SECTIONS.items():
        for key, kind, default, meaning in cfg.describe(cls):
            assert meaning and kind
            line = example.index(f"\n{key} = ")
            assert example[:line].rstrip().splitlines()[-1].startswith("#"), key
            assert f"`{key}`" in docs, f"[{section}] {key} missing from docs"


# --- values --------------------------------------------------------------------------------

def test_empty_file_gives_code_defaults_without_zones(tmp_path):
    config = parse("", tmp_path)
    assert config.zones == ()
    assert config.store == cfg.StoreConfig()


def test_units_for_sizes_and_durations(tmp_path):
    config = parse("""
[store]
map_size = "512MiB"
sweep_interval = "500ms"
[dns]
tcp_idle_timeout = "2m"
[http]
max_body_bytes = "16k"
idle_timeout = 7
""", tmp_path)
    assert config.store.map_size == 512 * 2**20
    assert config.store.sweep_interval == 0.5
    assert config.dns.tcp_idle_timeout == 120.0
    assert config.http.max_body_bytes == 16384
    assert config.http.idle_timeout == 7.0


def test_listen_addresses_v4_and_v6(tmp_path):
    config = parse('[dns]\nlisten = ["127.0.0.1:0", "[::1]:5300"]\n', tmp_path)
    v4, v6 = config.dns.listen
    assert (v4.host, v4.port, v4.is_ipv6) == ("127.0.0.1", 0, False)
    assert (v6.host, v6.port, v6.is_ipv6) == ("::1", 5300, True)
    assert str(v6) == "[::1]:5300"


@pytest.mark.parametrize("text", ["localhost:53", "::1:53", "[127.0.0.1]:53", "1.2.3.4",
                                  "1.2.3.4:65536", "[::1]53", "1.2.3.4:-1", 53])
def test_bad_listen_addresses_are_named(tmp_path, text):
    toml = f"[dns]\nlisten = [{text!r}]\n".replace("'", '"')
    message = error_of(toml, tmp_path)
    assert "[dns] listen" in message and str(text) in message


@pytest.mark.parametrize("pair, message", [
    (("0.0.0.0:53", "[::]:53"), "0.0.0.0:53 and [::]:53 overlap: [::]:53 takes port 53 on "
                                "every address (IPv4 too); list [::]:53 alone"),
    (("[::]:53", "[::1]:53"), "[::1]:53 and [::]:53 overlap"),
    (("127.0.0.1:53", "0.0.0.0:53"), "127.0.0.1:53 and 0.0.0.0:53 overlap: 0.0.0.0:53 "
                                     "takes port 53 on every address; list 0.0.0.0:53 alone"),
])
def test_an_address_beside_a_wildcard_on_its_port_is_refused(tmp_path, pair, message):
    toml = f"[dns]\nlisten = [\"{pair[0]}\", \"{pair[1]}\"]\n"
    assert message in error_of(toml, tmp_path)


def test_wildcards_on_other_ports_and_ipv6_beside_the_ipv4_wildcard_are_fine(tmp_path):
    parse('[dns]\nlisten = ["0.0.0.0:53", "[::1]:53", "[::]:5353"]\n', tmp_path)


def test_relative_zone_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "conf").mkdir()
    conf = tmp_path / "conf" / "node.toml"
    conf.write_text('zones = ["z/a.zone"]\n')
    config = load_config(conf, cwd=tmp_path / "elsewhere")
    assert config.zones[0].file == tmp_path / "conf" / "z" / "a.zone"
    assert config.node.data_dir == tmp_path / "elsewhere" / "dmfdns-data"


def test_zone_tables_and_absolute_data_dir(tmp_path):
    config = parse(f"""
[[zones]]
file = "/srv/a.zone"
[[zones]]
file = "b.zone"
[node]
data_dir = "{tmp_path / 'data'}"
""", tmp_path, cwd=pathlib.Path("/nowhere"))
    assert [z.file for z in config.zones] == [pathlib.Path("/srv/a.zone"), tmp_path / "b.zone"]
    assert config.node.data_dir == tmp_path / "data"


def test_token_file_is_relative_to_the_config_and_read_on_demand(tmp_path):
    (tmp_path / "token").write_text("s3cret\nignored\n")
    config = parse('[http]\nauth_mode = "legacy"\noperator_token_file = "token"\n', tmp_path)
    assert config.http.operator_token_file == tmp_path / "token"
    assert cfg.read_operator_token(config.http) == "s3cret"
    (tmp_path / "token").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        cfg.read_operator_token(config.http)


# --- errors --------------------------------------------------------------------------------

def test_unknown_key_names_it_and_the_valid_ones(tmp_path):
    message = error_of("[dns]\nlisten_on = []\n", tmp_path)
    assert "[dns]: unknown key 'listen_on'" in message
    assert "valid keys: listen, answer_ttl" in message


def test_unknown_section_and_zone_table_key(tmp_path):
    assert "top level: unknown key 'clusters'" in error_of("[clusters]\n", tmp_path)
    message = error_of('[[zones]]\nfile = "a"\norigin = "x."\n', tmp_path)
    assert "unknown key 'origin'; valid keys: file" in message


@pytest.mark.parametrize("toml, expected", [
    ("[dns]\nanswer_ttl = -1", "[dns] answer_ttl: must be an integer from 0 to 86400, got -1"),
    ("[dns]\nanswer_ttl = true", "[dns] answer_ttl: must be an integer"),
    ("[dns]\nudp_max_payload = 100", "[dns] udp_max_payload: must be an integer from 512"),
    ("[dns]\ntcp_idle_timeout = \"10 fortnights\"", "[dns] tcp_idle_timeout: must be a "
     "duration"),
    ("[store]\nmap_size = \"1 parsec\"", "[store] map_size: must be a size"),
    ("[store]\nmap_size = 10", "[store] map_size: must be a size from 1048576"),
    ("[node]\nnode_id = \"a b\"", "[node] node_id: must be letters, digits"),
    ("[node]\nnode_id = 7", "[node] node_id: must be a printable string"),
    ("[http]\nauth_mode = \"closed\"", "[http] auth_mode: must be one of 'open', 'legacy'"),
    ("[http]\nallow_open_non_loopback = 1", "[http] allow_open_non_loopback: must be true "
     "or false"),
    ("[http]\ntrusted_proxies = [\"10.0.0.0/33\"]", "[http] trusted_proxies: must be an IP"),
    ("[http]\nrate_limit = -0.5", "[http] rate_limit: must be a number from 0"),
    ("[dns]\nlisten = []", "[dns] listen: must be a list of at least 1"),
    ("[dns]\nlisten = [\"127.0.0.1:53\", \"127.0.0.1:53\"]", "without duplicates"),
    ("dns = 5", "[dns] must be a table"),
    ("zones = \"a.zone\"", "zones: must be a list"),
    ("zones = [\"\"]", "zones[0]: must be a non-empty path"),
    ("[[zones]]\n", "[[zones]] #1: missing key 'file'"),
    ("[dns\n", "invalid TOML"),
])
def test_precise_messages(tmp_path, toml, expected):
    assert expected in error_of(toml, tmp_path)


def test_open_writes_on_a_public_address_need_an_explicit_opt_in(tmp_path):
    public = '[http]\nlisten = ["0.0.0.0:8053"]\n'
    assert "auth_mode = \"open\" on non-loopback 0.0.0.0:8053" in error_of(public, tmp_path)
    assert parse(public + "allow_open_non_loopback = true\n", tmp_path).http.listen
    legacy = parse(public + 'auth_mode = "legacy"\noperator_token = "t"\n', tmp_path)
    assert legacy.http.auth_mode == "legacy"


def test_token_modes_need_a_token_and_only_one_source(tmp_path):
    assert "needs operator_token" in error_of('[http]\nauth_mode = "legacy"\n', tmp_path)
    both = '[http]\noperator_token = "a"\noperator_token_file = "f"\n'
    assert "not both" in error_of(both, tmp_path)


def test_load_config_prefixes_the_file_name(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[dns]\nanswer_ttl = \"x\"\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: \[dns\] answer_ttl"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_config_is_frozen(tmp_path):
    config = parse("", tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dns.answer_ttl = 5


@pytest.mark.parametrize("value, size", [(0, 0), ("1k", 1024), ("2 MiB", 2 * 2**20),
                                         ("3G", 3 * 2**30), ("7", 7), ("1x", None),
                                         (True, None), (1.5, None)])
def test_parse_size(value, size):
    assert cfg.parse_size(value) == size


@pytest.mark.parametrize("value, seconds", [(3, 3.0), (0.25, 0.25), ("250ms", 0.25),
                                            ("1.5s", 1.5), ("2h", 7200.0), ("1d", 86400.0),
                                            ("5", None), ("s", None), (False, None)])
def test_parse_duration(value, seconds):
    assert cfg.parse_duration(value) == seconds


def test_the_answer_cache_bounds_reach_the_responder(tmp_path):
    from dmfdns.dns.responder import Responder
    from dmfdns.node_dns import responder_settings
    from dmfdns.store.memory_store import MemoryStore
    config = parse('[dns]\nanswer_cache_entries = 500\nanswer_cache_bytes = "1MiB"\n',
                   tmp_path)
    cache = Responder([], MemoryStore(), responder_settings(config, None)).cache
    assert (cache.max_entries, cache.max_bytes) == (500, 2**20)
    off = parse("[dns]\nanswer_cache_entries = 0\n", tmp_path)
    assert Responder([], MemoryStore(), responder_settings(off, None)).cache is None
    with pytest.raises(ConfigError, match=r"\[dns\] answer_cache_entries"):
        parse("[dns]\nanswer_cache_entries = -1\n", tmp_path)
