"""``ops/`` kept honest: the systemd unit, the container files, the Prometheus scrape
config and alert rules, the runbooks and docs/metrics.md are each checked by the tool that
consumes them (systemd-analyze, systemd-sysusers, promtool, the dmfdns CLI parser, the
config loader), and every metric they name is checked against what two live nodes, one
syncing from the other, actually export on /metrics. Renaming a metric, a label, a CLI
subcommand or a config key without updating ops/ fails here."""

import dataclasses
import json
import pathlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass

import dns.message
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest
import pytest_twisted
from dnslib import EDNS0, RCODE, DNSRecord
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, task, threads

from dmfdns.cli import build_parser
from dmfdns.commands import CommandError
from dmfdns.config import ConfigError, defaults_dir, parse_config
from dmfdns.proto import cluster_manifest
from dmfdns.proto.keyfile import parse_seed
from dmfdns.proto.signing import Signer

from node_support import TIMEOUT, free_port, http_call, http_port, node_config, start_node

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


def run_tool(*argv, cwd=None, input=None):
    if argv[0] == "dmfdns":  # the CLI of the environment running the tests
        argv = (sys.executable, "-m", "dmfdns", *argv[1:])
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
    # dmfdns speaks sd_notify (tests/reliability/test_sighup_reload.py checks the messages)
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] == ["30s"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "MemoryDenyWriteExecute" not in s   # CPython + cffi (docs/decisions.md §8.3)


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


# --- runbooks and README: commands and config snippets -------------------------------------

DOCS_WITH_COMMANDS = [OPS / "README.md", *sorted(RUNBOOKS.glob("*.md"))]


def code_blocks(path: pathlib.Path, language: str) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", path.read_text(), re.M | re.S)


SHELL_OPERATORS = re.compile(r"^(\||\|\||&&|;|&|[0-9]?>>?.*|<.*)$")


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a shell block as argv lists: continuations joined, heredoc bodies
    and comments dropped, each command cut at the first pipe, redirection or separator
    (written with spaces around it, as these documents do)."""
    commands, heredoc = [], None
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        marker = re.search(r"<<-?'?(\w+)'?", line)
        if marker:
            heredoc = marker.group(1)
        argv = []
        for token in shlex.split(line, comments=True):
            if SHELL_OPERATORS.match(token):
                break
            argv.append(token)
        if argv:
            commands.append(argv)
    return commands


def dmfdns_invocations(path: pathlib.Path) -> list[list[str]]:
    found = []
    for block in code_blocks(path, "sh"):
        for argv in shell_commands(block):
            if argv[:3] == ["sudo", "-u", "dmfdns"]:
                argv = argv[3:]
            if argv and argv[0] == "dmfdns":
                found.append(argv[1:])
    return found


# What the shell substitutions in the runbooks stand for, so argparse can check the types.
SUBSTITUTIONS = {"$(cat operator-2.pub)": "ab" * 32,
                 "10:mesh.example:$(cat operator-2.pub)": "10:mesh.example:" + "ab" * 32}


def test_every_dmfdns_command_in_the_runbooks_parses_with_the_real_cli():
    total = 0
    for path in DOCS_WITH_COMMANDS:
        for argv in dmfdns_invocations(path):
            argv = [SUBSTITUTIONS.get(arg, arg) for arg in argv]
            unknown = [arg for arg in argv if "$" in arg]
            assert not unknown, f"{path.name}: add {unknown} to SUBSTITUTIONS"
            try:
                build_parser().parse_args(argv)
            except (CommandError, SystemExit) as exc:
                pytest.fail(f"{path.relative_to(ROOT)}: dmfdns {shlex.join(argv)}: {exc}")
            total += 1
    assert total >= 12


def test_every_toml_snippet_in_the_runbooks_is_a_valid_config(tmp_path):
    snippets = [(path, block) for path in DOCS_WITH_COMMANDS
                for block in code_blocks(path, "toml")]
    assert len(snippets) >= 4
    for path, block in snippets:
        try:
            parse_config(block, base=tmp_path, cwd=tmp_path)
        except ConfigError as exc:
            pytest.fail(f"{path.relative_to(ROOT)}: {exc}\n{block}")


def test_the_runbooks_manifest_sign_command_signs_what_a_node_verifies(tmp_path):
    """add-node.md's `dmfdns manifest sign` as written, with the key and output files
    moved under tmp_path: the manifest verifies with the key and lists the new node."""
    (argv,) = [a for a in dmfdns_invocations(RUNBOOKS / "add-node.md")
               if a[:2] == ["manifest", "sign"]]
    key_file, out_file = tmp_path / "operator.key", tmp_path / "manifest.txt"
    assert run_tool("dmfdns", "keygen", "--out", str(key_file)).returncode == 0
    argv = [str(key_file) if arg == "operator.key" else
            str(out_file) if arg.startswith("manifest-") else arg for arg in argv]
    result = run_tool("dmfdns", *argv)
    assert result.returncode == 0, result.stderr
    operator = Signer(parse_seed(key_file.read_bytes()))
    manifest = cluster_manifest.decode(out_file.read_text().strip(), operator.public_key)
    assert manifest is not None and manifest.seq == 8
    assert manifest.cluster_name == "mesh.example"
    assert [n.node_id for n in manifest.nodes] == ["ns1", "ns2", "ns3"]
    assert 364 * 86400 < manifest.exp - reactor.seconds() <= 365 * 86400


# --- Prometheus: promtool on the scrape config and the rules -------------------------------

METRICS_TOKEN_PATH = "/etc/prometheus/dmfdns-metrics.token"


@needs("promtool")
def test_promtool_accepts_the_scrape_config_as_shipped():
    result = run_tool("promtool", "check", "config", str(PROMETHEUS / "scrape.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@needs("promtool")
def test_promtool_accepts_the_scrape_config_with_the_token_enabled(tmp_path):
    """With the authorization lines uncommented, its token file moved under tmp_path
    (promtool checks that the file exists) and alerts.yml beside it."""
    token = tmp_path / "dmfdns-metrics.token"
    token.write_text("scrape-token\n")
    scrape = (PROMETHEUS / "scrape.yml").read_text()
    assert METRICS_TOKEN_PATH in scrape
    scrape = re.sub(r"^    # (authorization:|  type:|  credentials_file:)", r"    \1", scrape,
                    flags=re.M)
    (tmp_path / "scrape.yml").write_text(scrape.replace(METRICS_TOKEN_PATH, str(token)))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path)
    result = run_tool("promtool", "check", "config", "scrape.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    assert "\n    authorization:" in scrape          # the block really was enabled


@needs("promtool")
def test_promtool_accepts_the_alert_rules():
    result = run_tool("promtool", "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"SUCCESS: (\d+) rules found", result.stdout + result.stderr)
    assert found and int(found.group(1)) == len(alert_rules())


@needs("promtool")
def test_promtool_unit_tests_of_the_alerts_pass():
    """ops/prometheus/alerts_test.yml: node down, map use 80 %/95 %, SERVFAIL rate,
    store full versus other 5xx, sync staleness and full-set mismatch."""
    test_file = PROMETHEUS / "alerts_test.yml"
    tested = set(re.findall(r"alertname: (\w+)", test_file.read_text()))
    assert len(tested) >= 8
    assert tested <= {rule["alert"] for rule in alert_rules()}
    result = run_tool("promtool", "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- two live nodes: what /metrics really exports ------------------------------------------

SYNC_TOKEN = "ops-test-sync-token"
OPERATOR = Signer(bytes(range(32)))
OTHER_ZONE = """$ORIGIN other.test.
$TTL 3600
@       IN SOA  ns1.other.test. hostmaster.other.test. 1 3600 600 604800 60
@       IN NS   ns1.other.test.
ns1     IN A    127.0.0.1
"""


def config_in(directory: pathlib.Path, zones, cluster: dict, http: dict = None):
    """A node named after ``directory``, keeping its data there."""
    directory.mkdir(parents=True, exist_ok=True)
    return node_config(directory, directory / "data", node_id=directory.name, zones=zones,
                       http_options=http, cluster=cluster)


def dns_traffic(port: int) -> None:
    """UDP and TCP answers, NXDOMAIN, REFUSED, a truncated answer, a dropped runt, a
    signed denial."""
    for name, tcp in (("mesh.test", False), ("nothing.mesh.test", True),
                      ("big.mesh.test", False), ("example.com", False)):
        DNSRecord.question(name, "TXT").send("127.0.0.1", port, tcp=tcp, timeout=TIMEOUT)
    signed = DNSRecord.question("nothing.mesh.test", "TXT")      # DO: a signed denial
    signed.add_ar(EDNS0(flags="do", udp_len=1232))
    signed.send("127.0.0.1", port, timeout=TIMEOUT)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x01", ("127.0.0.1", port))
    update_traffic(port)


def update_traffic(port: int) -> None:
    """An UPDATE signed by an unknown key (BADKEY), then two unsigned claim adds into one
    mailbox whose burst is one: the first is refused (not a claim record), the second is
    throttled by the mailbox bucket."""
    keyring = dns.tsigkeyring.from_text({"stranger.mesh.test.": "c2VjcmV0c2VjcmV0"})
    signed = dns.update.UpdateMessage("mesh.test", keyring=keyring)
    signed.add("x.mesh.test.", 60, "TXT", "hello")
    claims = dns.update.UpdateMessage("mesh.test")
    claims.add("claim-0.mb-0123456789ab.mesh.test.", 60, "TXT", "not-a-claim")
    answers = [ask_udp(port, message.to_wire()) for message in (signed, claims, claims)]
    assert [dns.rcode.from_flags(a[2] << 8 | a[3], 0) for a in answers] == [
        dns.rcode.NOTAUTH, dns.rcode.REFUSED, dns.rcode.SERVFAIL], answers


def ask_udp(port: int, wire: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(wire, ("127.0.0.1", port))
        return sock.recv(65535)


def wanted_samples_present(text: str) -> bool:
    """Every sync family the docs check labels on has a sample, and the runt was counted."""
    return all(re.search(rf"^{name}\{{", text, re.M) for name in (
        "dmfdns_sync_fullset_checks_total", "dmfdns_sync_records_rejected_total",
        "dmfdns_sync_errors_total", "dmfdns_sync_records_pulled_total",
        "dmfdns_dns_dropped_total"))


def sleep(seconds: float):
    return task.deferLater(reactor, seconds, lambda: None)


@pytest.fixture(scope="module")
def live_metrics(tmp_path_factory):
    """The /metrics text of node "a", which syncs from node "b" (two zones, so some of
    b's records are refused by a) and from a peer that is not listening, keeps a cluster
    manifest keeper and publishes a heartbeat, after DNS and HTTP traffic of every kind."""
    tmp = tmp_path_factory.mktemp("live")
    mesh = defaults_dir() / "mesh.test.zone"
    other = tmp / "other.test.zone"
    other.write_text(OTHER_ZONE)
    seed = tmp / "operator.key"
    seed.write_text(bytes(range(32)).hex() + "\n")
    nodes = []

    def start(config):
        nodes.append(start_node(config))
        return nodes[-1]

    def scrape(port):
        return pytest_twisted.blockon(threads.deferToThread(http_call, port, "GET",
                                                            "/metrics"))

    try:
        b = start(config_in(tmp / "b", [mesh, other], {"sync_token": SYNC_TOKEN}))
        b_port = http_port(b)
        for name in ("x.mesh.test", "y.other.test"):
            status, _, _ = pytest_twisted.blockon(threads.deferToThread(
                http_call, b_port, "POST", f"/v1/records/{name}", {"value": "hello"}))
            assert status == 201
        config = config_in(tmp / "a", [mesh], {
            "sync_token": SYNC_TOKEN, "sync_interval": "0.1s", "fullset_interval": "0.1s",
            "peers": [f"http://127.0.0.1:{b_port}", f"http://127.0.0.1:{free_port()}"],
            "base": "mesh.test", "operator_key": OPERATOR.public_key.hex(),
            "heartbeat_endpoint": "https://ns1.example.net", "heartbeat_key_file": str(seed),
            "heartbeat_interval": "1s"})
        # mesh.test signed (DNSSEC), so the signing families have samples too.
        # mesh.test also takes UPDATEs and claims (one claim a mailbox), for those families.
        a = start(dataclasses.replace(config, zones=tuple(
            dataclasses.replace(zone, dnssec=True) for zone in config.zones),
            update=dataclasses.replace(config.update, enabled=True, claim_burst=1)))
        a_port = http_port(a)
        for body in ({"value": "v" * 600}, {"value": "x", "ttl": -1}):
            pytest_twisted.blockon(threads.deferToThread(
                http_call, a_port, "POST", "/v1/records/big.mesh.test", body))
        pytest_twisted.blockon(threads.deferToThread(
            dns_traffic, a.dns_addresses("udp")[0].port))
        for _ in range(100):
            status, _, body = scrape(a_port)
            assert status == 200
            text = body.decode()
            if wanted_samples_present(text):
                break
            pytest_twisted.blockon(sleep(0.1))
        yield text
    finally:
        for node in nodes:
            pytest_twisted.blockon(node.stopService())


@dataclass(frozen=True)
class Family:
    name: str                 # as written in PromQL: counters with their _total
    type: str
    labels: frozenset | None  # None: no sample to read them from
    samples: frozenset        # the sample names it exposes (_bucket, _count, ...)
    values: dict              # label -> the values seen


SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exported_families(text: str) -> dict[str, Family]:
    """The families of an exposition by PromQL name; a counter's or histogram's
    ``_created`` companion gauge is folded into it (docs/metrics.md says so once)."""
    parsed = list(text_string_to_metric_families(text))
    bases = {f.name for f in parsed if f.type in ("counter", "histogram")}
    created = {f.name[:-8] for f in parsed if f.type == "gauge" and f.name[:-8] in bases}
    families = {}
    for f in parsed:
        if f.type == "gauge" and f.name.endswith("_created") and f.name[:-8] in bases:
            continue
        assert f.type in SUFFIXES, f"{f.name}: unexpected type {f.type}"
        values = {}
        for sample in f.samples:
            for label, value in sample.labels.items():
                if label != "le":
                    values.setdefault(label, set()).add(value)
        labels = frozenset(values) if f.samples else None
        name = f.name + ("_total" if f.type == "counter" else "")
        samples = {f.name + s for s in SUFFIXES[f.type]}
        if f.name in created:
            samples.add(f.name + "_created")
        families[name] = Family(name, f.type, labels, frozenset(samples), values)
    return families


def sample_names(families: dict) -> dict[str, Family]:
    return {sample: family for family in families.values() for sample in family.samples}


@pytest.mark.integration
def test_the_live_nodes_export_every_family_with_samples(live_metrics):
    """The fixture drives enough traffic that every family shows its labels, which is what
    makes the label checks below complete (a new family needs traffic here too)."""
    families = exported_families(live_metrics)
    assert len(families) >= 40
    assert [f.name for f in families.values() if f.labels is None] == []


# --- docs/metrics.md ------------------------------------------------------------------------

def documented_metrics() -> dict[str, tuple[str, frozenset]]:
    """``{name: (type, labels)}`` from the tables of docs/metrics.md."""
    rows = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"`dmfdns_\w+`", cells[0]):
            continue
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is documented twice"
        labels = frozenset(re.findall(r"`(\w+)`", cells[2]))
        assert labels or cells[2] == "–", f"{name}: labels cell {cells[2]!r}"
        rows[name] = (cells[1], labels)
    return rows


@pytest.mark.integration
def test_docs_metrics_lists_exactly_the_live_families_with_type_and_labels(live_metrics):
    families = exported_families(live_metrics)
    documented = documented_metrics()
    assert sorted(set(families) - set(documented)) == [], "exported but not documented"
    assert sorted(set(documented) - set(families)) == [], "documented but not exported"
    for name, (kind, labels) in documented.items():
        assert kind == families[name].type, name
        assert labels == families[name].labels, name


def metric_names_in(text: str) -> list[str]:
    """``dmfdns_…`` names in prose and PromQL/grep snippets; a name ending in ``_`` is a
    prefix, and ``dmfdns_(a|b_)`` alternations are expanded. Paths are not names."""
    names = []
    for group in re.findall(r"(?<![/\w])dmfdns_\(([\w|]+)\)", text):
        names += ["dmfdns_" + alternative for alternative in group.split("|")]
    names += re.findall(r"(?<![/\w])dmfdns_[a-z0-9_]*[a-z0-9_](?![(\w])", text)
    return names


@pytest.mark.integration
def test_every_metric_named_in_the_docs_and_runbooks_is_exported(live_metrics):
    families = exported_families(live_metrics)
    exported = set(families) | set(sample_names(families))
    for path in [METRICS_DOC, OPS / "README.md", *sorted(RUNBOOKS.glob("*.md"))]:
        for name in metric_names_in(path.read_text()):
            if name.endswith("_"):
                assert any(e.startswith(name) for e in exported), \
                    f"{path.relative_to(ROOT)}: no exported metric starts with {name}"
            else:
                assert name in exported, f"{path.relative_to(ROOT)}: {name} is not exported"


# --- alerts.yml against the live metrics ----------------------------------------------------

def alert_rules() -> list[dict]:
    """``{"alert", "expr", "annotations"}`` of each rule in alerts.yml: a reader for the
    shapes that file uses (inline or folded ``expr``), so no YAML library is needed;
    promtool checks the file's structure."""
    rules, current, block = [], None, None
    for line in (PROMETHEUS / "alerts.yml").read_text().splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block is not None:
            if stripped and indent > block[1]:
                current[block[0]] += " " + stripped
                continue
            block = None
        if stripped.startswith("- alert:"):
            current = {"alert": stripped.split(":", 1)[1].strip(), "expr": "",
                       "annotations": ""}
            rules.append(current)
        elif current is not None and stripped.startswith("expr:"):
            value = stripped.split(":", 1)[1].strip()
            if value in (">-", ">", "|", "|-"):
                block = ("expr", indent)
            else:
                current["expr"] = value
        elif current is not None and re.match(r"(summary|description|runbook):", stripped):
            value = stripped.split(":", 1)[1].strip()
            current["annotations"] += " " + stripped
            if value in (">-", ">", "|", "|-"):
                block = ("annotations", indent)
    return rules


TARGET_LABELS = {"job", "instance"}
SELECTOR = re.compile(r"\b(dmfdns_\w+)\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


@pytest.mark.integration
def test_alerts_use_only_exported_metrics_and_their_labels(live_metrics):
    families = exported_families(live_metrics)
    by_sample = sample_names(families)
    rules = alert_rules()
    assert len(rules) >= 10
    for rule in rules:
        where = f"alert {rule['alert']}"
        used = re.findall(r"\bdmfdns_\w+", rule["expr"])
        assert used or re.search(r"\bup\{", rule["expr"]), where
        for name in used:
            assert name in by_sample, f"{where}: {name} is not exported"
        known = TARGET_LABELS.union(*(by_sample[n].labels for n in used))
        for name, matchers in SELECTOR.findall(rule["expr"]):
            family = by_sample[name]
            for label, op, value in MATCHER.findall(matchers):
                assert label in family.labels | TARGET_LABELS, f"{where}: {name} has no {label}"
                if label not in TARGET_LABELS and op in ("=", "=~"):
                    check_label_value(where, family, label, value)
        grouped = re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", rule["expr"])
        templated = re.findall(r"\$labels\.(\w+)", rule["annotations"])
        for label in [l.strip() for g in grouped for l in g.split(",")] + templated:
            assert label in known, f"{where}: no metric in the rule has label {label!r}"


def check_label_value(where: str, family: Family, label: str, pattern: str) -> None:
    """A matched label value must be one the node can export: an rcode name dnslib knows,
    an HTTP status, or (for other labels) a value the live nodes exported or the metric's
    row in docs/metrics.md names."""
    if label == "rcode":
        allowed = set(RCODE.forward.values()) | {"BADVERS"}
    elif label == "code":
        assert re.fullmatch(r"[1-5][0-9.]{2}", pattern), f"{where}: code {pattern!r}"
        return
    else:
        allowed = family.values[label] | documented_values(family.name)
    for value in pattern.split("|"):
        assert value in allowed, f"{where}: {family.name}{{{label}=\"{value}\"}} never exported"


def documented_values(name: str) -> set[str]:
    """The backticked words of the meaning cell of ``name``'s row in docs/metrics.md."""
    for line in METRICS_DOC.read_text().splitlines():
        if line.startswith(f"| `{name}` |"):
            return set(re.findall(r"`(\w+)`", line.rsplit("|", 2)[1]))
    return set()


def test_every_alert_names_a_runbook_that_exists():
    for rule in alert_rules():
        (runbook,) = re.findall(r"runbook: (\S+)", rule["annotations"])
        assert (ROOT / runbook).is_file(), f"alert {rule['alert']}: {runbook} is missing"


# --- the key rotation runbook on a live node ------------------------------------------------

@pytest.mark.integration
@pytest_twisted.inlineCallbacks
def test_key_rotation_runbook_a_restarted_node_follows_the_new_key(tmp_path):
    """rotate-operator-key.md step 2 and 3 on one node: restarted with the new key pinned
    and the new manifest as manifest_file, it follows seq 9, counts the old manifest as
    invalid once, keeps the old value at cluster.<base> beside the new one, and the
    runbook's DELETE removes it."""
    old, new = Signer(bytes([1]) * 32), Signer(bytes([2]) * 32)
    nodes = [cluster_manifest.ClusterNode("a", "http://10.0.0.1:8053")]
    expires = int(reactor.seconds()) + 30 * 86400
    wires = {}
    for seq, signer in ((8, old), (9, new)):
        wires[seq] = cluster_manifest.sign(seq, expires, signer.public_key, "mesh.test",
                                           nodes, signer)
        (tmp_path / f"manifest-{seq}.txt").write_text(wires[seq] + "\n")
        (tmp_path / f"operator-{seq}.pub").write_text(signer.public_key.hex() + "\n")

    def config(seq):
        return config_in(tmp_path / "a", [defaults_dir() / "mesh.test.zone"], {
            "base": "mesh.test", "operator_key_file": str(tmp_path / f"operator-{seq}.pub"),
            "manifest_file": str(tmp_path / f"manifest-{seq}.txt"),
            "sync_token": SYNC_TOKEN}, {"auth_mode": "legacy", "operator_token": "op-token"})

    node = start_node(config(8))
    assert node.cluster.keeper.current[1].seq == 8
    yield node.stopService()

    node = start_node(config(9))
    try:
        port = http_port(node)
        status, _, body = yield threads.deferToThread(http_call, port, "GET", "/metrics")
        text = body.decode()
        assert "dmfdns_cluster_manifest_seq 9.0" in text
        assert 'dmfdns_cluster_manifest_rejected_total{reason="invalid"} 1.0' in text
        stored = {v.value for v in node.store.get("cluster.mesh.test", reactor.seconds())}
        assert stored == {wires[8], wires[9]}
        status, _, _ = yield threads.deferToThread(
            http_call, port, "DELETE", "/v1/records/cluster.mesh.test", {"value": wires[8]},
            {"Authorization": "Bearer op-token"})
        assert status == 204
        stored = {v.value for v in node.store.get("cluster.mesh.test", reactor.seconds())}
        assert stored == {wires[9]}
    finally:
        yield node.stopService()


# --- the Grafana dashboard ------------------------------------------------------------------

DASHBOARD = OPS / "grafana" / "dmfdns-dashboard.json"


def dashboard_expressions() -> list[tuple[str, str]]:
    """``(where, PromQL)`` of every panel target and template query of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    found = [(f"panel {panel['title']!r}", target["expr"])
             for panel in board["panels"] for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("definition", "")
        inner = re.fullmatch(r"label_values\((.*), (\w+)\)", query)
        if inner:
            found.append((f"variable {variable['name']}", inner.group(1)))
    return found


@pytest.mark.integration
def test_the_dashboard_uses_only_exported_metrics_and_their_labels(live_metrics):
    families = exported_families(live_metrics)
    by_sample = sample_names(families)
    expressions = dashboard_expressions()
    assert len(expressions) >= 25
    for where, expr in expressions:
        names = re.findall(r"\bdmfdns_[a-z0-9_]+", expr)
        assert names, f"{where}: no dmfdns metric in {expr}"
        for name in names:
            assert name in by_sample, f"{where}: {name} is not exported by a node"
        known = TARGET_LABELS | {"le"}
        known = known.union(*(by_sample[name].labels for name in names))
        grouped = re.findall(r"\bby \(([^)]*)\)", expr)
        for label in [l.strip() for group in grouped for l in group.split(",")]:
            assert label in known, f"{where}: no metric in {expr} has label {label!r}"
        for label, _, _ in MATCHER.findall(expr):
            assert label in known, f"{where}: no metric in {expr} has label {label!r}"


@needs("promtool")
def test_promtool_parses_every_dashboard_expression(tmp_path):
    """Each expression (the $instance variable as Grafana's "All", .*) as a recording rule:
    ``promtool check rules`` parses it."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for index, (_, expr) in enumerate(dashboard_expressions()):
        expr = expr.replace("$instance", ".*")
        lines += [f"      - record: dashboard:expr_{index}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "rules.yml").write_text("\n".join(lines) + "\n")
    result = run_tool("promtool", "check", "rules", str(tmp_path / "rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(dashboard_expressions())} rules found" in result.stdout
