"""Pieces of ``dmfdns demo`` that can be checked without starting nodes."""

import subprocess
import sys

import pytest

from dmfdns.commands import demo
from dmfdns.config import parse_config


def test_the_generated_node_config_is_valid(tmp_path):
    text = demo.node_config("demo1", tmp_path / "data", 40001, 40002)
    config = parse_config(text, base=tmp_path, cwd=tmp_path)
    assert config.node.node_id == "demo1" and config.node.data_dir == tmp_path / "data"
    assert [(a.host, a.port) for a in config.dns.listen] == [("127.0.0.1", 40001)]
    assert [(a.host, a.port) for a in config.http.listen] == [("127.0.0.1", 40002)]
    assert [z.file.name for z in config.zones] == ["mesh.test.zone"]


def test_ports_are_distinct_and_never_the_reserved_ones():
    taken = set(demo.RESERVED_PORTS)
    ports = [demo.free_port(taken) for _ in range(6)]
    assert len(set(ports)) == 6 and not set(ports) & demo.RESERVED_PORTS


def test_a_node_that_dies_at_start_is_reported_with_its_last_log_line(tmp_path):
    (tmp_path / "node.log").write_text("starting\nConfigError: port in use\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    node = demo._Node("demo1", tmp_path, 1, 1, process)
    with pytest.raises(demo._DemoFailed, match="demo1 exited with status 3: ConfigError: "
                                              "port in use"):
        demo._wait_ready([node])
