"""``ops/`` kept honest: the systemd unit, the container files, the Prometheus scrape
config and alert rules, the runbooks and docs/metrics.md are each checked by the tool that
consumes them (systemd-analyze, systemd-sysusers, promtool, the dmfdns CLI parser, the
config loader), and every metric they name is checked against what two live nodes, one
syncing from the other, actually export on /metrics. Renaming a metric, a label, a CLI
subcommand or a config key without updating ops/ fails here."""

import http.client
import json
import pathlib
import re
import shlex
import shutil
import socket
import subprocess
import tomllib

import pytest
import pytest_twisted
from dnslib import DNSRecord
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, task, threads

from dmfdns.cli import build_parser
from dmfdns.config import defaults_dir, parse_config
from dmfdns.node import make_service
from dmfdns.proto.signing import Signer

ROOT = pathlib.Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
UNIT = OPS / "systemd" / "dmfdns.service"
SYSUSERS = OPS / "systemd" / "dmfdns.sysusers.conf"
CONTAINERFILE = OPS / "container" / "Containerfile"
CONTAINER_CONFIG = OPS / "container" / "dmfdns.toml"
PROMETHEUS = OPS / "prometheus"
RUNBOOKS = OPS / "runbooks"
METRICS_DOC = ROOT / "docs" / "metrics.md"
SERVED_CONFIG = "/etc/dmfdns/dmfdns.toml"
TIMEOUT = 10.0


def run_tool(*argv, cwd=None, input=None):
    return subprocess.run(argv, cwd=cwd, input=input, capture_output=True, text=True,
                          timeout=60)


def needs(tool: str):
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed")


# --- systemd --------------------------------------------------------------------------------

def unit_entries(path: pathlib.Path) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` for every assignment of a systemd unit file, in order
    (systemd allows a key more than once)."""
    entries, section = [], ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not an assignment: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def service_settings() -> dict[str, list[str]]:
    settings = {}
    for section, key, value in unit_entries(UNIT):
        if section == "Service":
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_runs_the_node_as_a_sandboxed_non_root_user():
    s = service_settings()
    assert s["ExecStart"] == [f"/usr/bin/env dmfdns serve --config {SERVED_CONFIG}"]
    assert s["ExecStartPre"] == [f"/usr/bin/env dmfdns check-config {SERVED_CONFIG}"]
    assert s["User"] == ["dmfdns"] and s["Group"] == ["dmfdns"]
    assert s["AmbientCapabilities"] == s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert s["StateDirectory"] == ["dmfdns"]
    assert s["WorkingDirectory"] == ["/var/lib/dmfdns"]
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes",
                       "PrivateTmp": "yes", "ProtectHome": "yes", "PrivateDevices": "yes",
                       "RestrictSUIDSGID": "yes"}.items():
        assert s[key] == [value], key
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # dmfdns sends no sd_notify READY=1 yet: Type=notify would time out at every start.
    assert s["Type"] == ["exec"]
    assert "MemoryDenyWriteExecute" not in s   # CPython + cffi (operators.md section 7)


def test_the_units_commands_parse_with_the_real_cli():
    s = service_settings()
    for command in s["ExecStartPre"] + s["ExecStart"]:
        argv = shlex.split(command)
        assert argv[:2] == ["/usr/bin/env", "dmfdns"]
        args = build_parser().parse_args(argv[2:])
        assert args.handler.__name__ in ("serve", "check_config")


@needs("systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit_without_a_warning():
    result = run_tool("systemd-analyze", "verify", str(UNIT))
    # verify exits 0 on unknown keys and bad values (it only warns), so stderr must be empty
    assert result.returncode == 0 and result.stderr == "", result.stderr


@needs("systemd-sysusers")
def test_the_sysusers_file_creates_the_units_user(tmp_path):
    (tmp_path / "etc").mkdir()
    result = run_tool("systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS))
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text().splitlines()
    (user,) = [line.split(":") for line in passwd if line.startswith("dmfdns:")]
    assert user[0] == service_settings()["User"][0]
    assert int(user[2]) != 0 and user[5] == "/var/lib/dmfdns"
    assert user[6] == "/usr/sbin/nologin"


# --- the container image --------------------------------------------------------------------

def containerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with backslash continuations joined."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_the_containerfile_copies_files_that_exist_and_runs_the_real_cli():
    instructions = containerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copied = [args.split()[:-1] for op, args in instructions if op == "COPY"]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    (entrypoint,) = [json.loads(args) for op, args in instructions if op == "ENTRYPOINT"]
    (cmd,) = [json.loads(args) for op, args in instructions if op == "CMD"]
    assert entrypoint == ["tini", "--", "dmfdns"]
    args = build_parser().parse_args(cmd)
    assert args.handler.__name__ == "serve" and args.config == SERVED_CONFIG
    (user,) = [args for op, args in instructions if op == "USER"]
    assert user not in ("root", "0")
    (expose,) = [args.split() for op, args in instructions if op == "EXPOSE"]
    config = container_config(ROOT)
    ports = {f"{a.port}/udp" for a in config.dns.listen} | {
        f"{a.port}/tcp" for a in config.dns.listen + config.http.listen}
    assert set(expose) == ports
    (healthcheck,) = [args for op, args in instructions if op == "HEALTHCHECK"]
    assert f"127.0.0.1:{config.http.listen[0].port}/healthz" in healthcheck


def container_config(cwd: pathlib.Path):
    """ops/container/dmfdns.toml as parsed inside the image (files are not read here)."""
    return parse_config(CONTAINER_CONFIG.read_text(), base=pathlib.Path("/etc/dmfdns"),
                        cwd=cwd)


def test_the_container_config_passes_check_config(tmp_path):
    """The image's config, with /etc/dmfdns and /run/secrets moved under tmp_path."""
    etc = tmp_path / "etc"
    (etc / "zones").mkdir(parents=True)
    shutil.copy(ROOT / "zones" / "mesh.test.zone", etc / "zones")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "dmfdns_operator_token").write_text("a-long-operator-token\n")
    text = (CONTAINER_CONFIG.read_text().replace("/run/secrets", str(secrets))
            .replace("/var/lib/dmfdns", str(tmp_path / "data")))
    (etc / "dmfdns.toml").write_text(text)
    argv = ["check-config", str(etc / "dmfdns.toml")]
    result = run_tool("dmfdns", *argv)
    assert result.returncode == 0, result.stderr
    assert "auth legacy" in result.stdout and "0.0.0.0:8053" in result.stdout
