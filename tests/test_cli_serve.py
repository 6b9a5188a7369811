"""The operator CLI: check-config, zone check, records, and ``dmfdns serve`` as a process."""

import io
import json
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from dmfdns.cli import run
from dmfdns.node_lock import NodeLock
from dmfdns.proto import owners

from node_support import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZONE = ROOT / "zones" / "mesh.test.zone"
NOW = 1_800_000_000.0


def cli(*argv, now=NOW):
    out, err = io.StringIO(), io.StringIO()
    status = run(list(argv), now=now, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def write_config(tmp_path, dns_port=0, extra="") -> pathlib.Path:
    path = tmp_path / "node.toml"
    path.write_text(f"""zones = ["{ZONE}"]
[node]
data_dir = "{tmp_path / 'data'}"
[store]
map_size = "64MiB"
[dns]
listen = ["127.0.0.1:{dns_port}"]
{extra}
[http]
listen = []
""")
    return path


# --- check-config --------------------------------------------------------------------------

def test_check_config_accepts_the_example():
    status, out, err = cli("check-config", str(ROOT / "node" / "example.toml"))
    assert status == 0, err
    assert "example.toml: OK" in out and "mesh.test (serial 1 in the file)" in out


def test_check_config_names_the_bad_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[dns]\nlisten = [\"127.0.0.1:53\"]\ntcp_timeout = 5\n")
    status, out, err = cli("check-config", str(bad))
    assert status == 1 and out == ""
    assert err.count("\n") == 1
    assert "bad.toml: [dns]: unknown key 'tcp_timeout'; valid keys:" in err


def test_check_config_reads_the_zone_files(tmp_path):
    zone = tmp_path / "broken.zone"
    zone.write_text("$ORIGIN x.test.\n@ 60 IN NS ns1.x.test.\n")
    conf = tmp_path / "c.toml"
    conf.write_text('zones = ["broken.zone"]\n')
    status, _, err = cli("check-config", str(conf))
    assert status == 1 and "broken.zone" in err and "SOA" in err


def test_check_config_missing_file(tmp_path):
    status, _, err = cli("check-config", str(tmp_path / "nope.toml"))
    assert status == 1 and "cannot read" in err


# --- zone check ----------------------------------------------------------------------------

def test_zone_check_prints_serial_and_counts():
    status, out, _ = cli("zone", "check", str(ZONE))
    assert status == 0
    assert "zone mesh.test OK" in out
    assert "serial 1, negative TTL 60 s" in out
    assert "3 records in 3 RRsets (A 1, NS 1, SOA 1)" in out


def test_zone_check_reports_file_and_line(tmp_path):
    zone = tmp_path / "z.zone"
    zone.write_text("$ORIGIN z.test.\n$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\n"
                    "ns1 A 300.1.1.1\n")
    status, out, err = cli("zone", "check", str(zone))
    assert status == 1 and out == ""
    assert f"{zone}:5:" in err


def test_packaged_zone_equals_the_operator_copy():
    packaged = ROOT / "dmfdns" / "defaults" / "mesh.test.zone"
    assert packaged.read_bytes() == ZONE.read_bytes()


# --- records -------------------------------------------------------------------------------

IDENTITY = json.loads((ROOT / "tests" / "vectors" / "identity_record.json").read_text())[0]
IDENTITY_NAME = owners.identity_hashed(IDENTITY["inputs"]["username"], "mesh.test")
IDENTITY_WIRE = bytes.fromhex(IDENTITY["expected_wire_hex"]).decode("ascii")


def test_records_put_list_delete(tmp_path):
    conf = str(write_config(tmp_path))
    assert cli("records", "put", "Note.Mesh.Test.", "hello world", "--ttl", "600",
               "--config", conf)[0] == 0
    status, out, err = cli("records", "put", IDENTITY_NAME, IDENTITY_WIRE, "--config", conf)
    assert status == 0, err
    status, out, err = cli("records", "list", "--config", conf, now=NOW + 100)
    assert status == 0
    assert out.splitlines() == [f"{IDENTITY_NAME}\t200\t{IDENTITY_WIRE}",
                                "note.mesh.test\t500\thello world"]
    assert "2 values at 2 names" in err
    assert cli("records", "list", "id-", "--config", conf)[1].count("\n") == 1
    status, out, _ = cli("records", "delete", IDENTITY_NAME, "--config", conf)
    assert status == 0 and "deleted 1 value" in out
    status, _, err = cli("records", "delete", IDENTITY_NAME, "--config", conf)
    assert status == 1 and "holds no value" in err
    assert cli("records", "list", "--config", conf)[1].splitlines() == \
        ["note.mesh.test\t600\thello world"]


@pytest.mark.parametrize("argv, message", [
    (("a.example.org", "v"), "a.example.org is outside the served zones (mesh.test)"),
    (("a b.mesh.test", "v"), "invalid record name"),
    (("a.mesh.test", "caf\u00e9"), "printable ASCII"),
    (("a.mesh.test", 'say "hi"'), "a.mesh.test: refused: invalid record value"),
    (("a.mesh.test", "x" * 2049), "refused: value exceeds cap of 2048 bytes"),
    ((IDENTITY_NAME, "v=dmp1;t=identity;d=AAAA"), "refused: invalid record value"),
    (("slot-1.mb-0123456789ab.mesh.test", "plain text"), "refused: invalid record value"),
])
def test_records_put_admits_like_the_http_api(tmp_path, argv, message):
    conf = str(write_config(tmp_path))
    status, _, err = cli("records", "put", *argv, "--config", conf)
    assert status == 1 and message in err
    assert cli("records", "list", "--config", conf)[1] == ""   # nothing written


def test_records_ttl_is_capped_like_the_http_api(tmp_path):
    conf = str(write_config(tmp_path))
    status, _, err = cli("records", "put", "a.mesh.test", "v", "--ttl", "86401",
                         "--config", conf)
    assert status == 2 and "from 1 to 86400" in err
    status, _, err = cli("records", "put", "a.mesh.test", "v", "--ttl", "0", "--config", conf)
    assert status == 2 and "whole seconds" in err


def test_records_list_before_anything_was_written(tmp_path):
    status, _, err = cli("records", "list", "--config", str(write_config(tmp_path)))
    assert status == 1 and "no dmfdns store" in err


def test_records_writes_refuse_while_a_node_holds_the_lock(tmp_path):
    conf = str(write_config(tmp_path))
    cli("records", "put", "a.mesh.test", "v", "--config", conf)
    data = tmp_path / "r.jsonl"
    data.write_text('{"name": "b.mesh.test", "value": "v"}\n')
    lock = NodeLock(tmp_path / "data").acquire("serve")
    try:
        for argv in (("put", "b.mesh.test", "v"), ("delete", "a.mesh.test"),
                     ("import", str(data))):
            status, _, err = cli("records", *argv, "--config", conf)
            assert status == 1, argv
            assert "in use by a running dmfdns node" in err and "HTTP API" in err
        status, out, _ = cli("records", "list", "--config", conf)
        assert status == 0 and out.startswith("a.mesh.test\t")
    finally:
        lock.release()


def test_records_import_json_lines_in_one_transaction(tmp_path):
    conf = str(write_config(tmp_path))
    lines = [json.dumps({"name": f"n{i}.mesh.test", "value": f"v{i}",
                         "ttl": 100 + i}) for i in range(1000)]
    lines.insert(5, "")
    data = tmp_path / "records.jsonl"
    data.write_text("\n".join(lines) + "\n" + json.dumps({"name": "x.mesh.test",
                                                           "value": "no ttl"}) + "\n")
    status, out, err = cli("records", "import", str(data), "--ttl", "77", "--config", conf)
    assert status == 0, err
    assert out.startswith("imported 1001 records (1001 changed) in ")
    assert "records/s" in out
    listed = cli("records", "list", "--config", conf)[1].splitlines()
    assert len(listed) == 1001
    assert "x.mesh.test\t77\tno ttl" in listed
    assert "n999.mesh.test\t1099\tv999" in listed


def test_records_import_cannot_overfill_an_rrset(tmp_path):
    conf = str(write_config(tmp_path))
    data = tmp_path / "r.jsonl"
    data.write_text("".join(json.dumps({"name": "full.mesh.test", "value": f"v{i}"}) + "\n"
                            for i in range(65)))
    status, _, err = cli("records", "import", str(data), "--config", conf)
    assert status == 1 and f"{data}:65: refused: RRset at full.mesh.test already holds 64" \
        in err
    assert cli("records", "list", "--config", conf)[1] == ""


@pytest.mark.parametrize("line, message", [
    ('{"name": "a.mesh.test"}', '"name" and "value" (strings) are required'),
    ('{"name": "a.mesh.test", "value": "v", "ttl": -5}', '"ttl" must be whole seconds'),
    ('{"name": "a.mesh.test", "value": "v", "extra": 1}', "unknown field 'extra'"),
    ('{"name": "a.other", "value": "v"}', "outside the served zones"),
    ('{"name": "a.mesh.test", "value": "v"', "not a JSON object"),
])
def test_records_import_rejects_the_whole_file_on_a_bad_line(tmp_path, line, message):
    conf = str(write_config(tmp_path))
    data = tmp_path / "r.jsonl"
    data.write_text('{"name": "ok.mesh.test", "value": "v"}\n' + line + "\n")
    status, _, err = cli("records", "import", str(data), "--config", conf)
    assert status == 1 and f"{data}:2: " in err and message in err
    assert cli("records", "list", "--config", conf)[0] == 1   # nothing was written


def test_records_import_zone_file_txt_records(tmp_path):
    conf = str(write_config(tmp_path))
    zone = tmp_path / "export.zone"
    zone.write_text("$ORIGIN mesh.test.\n$TTL 300\n"
                    "@ IN SOA ns1 hostmaster 5 3600 600 604800 60\n@ IN NS ns1\n"
                    "ns1 IN A 127.0.0.1\n"
                    f"{IDENTITY_NAME}. 120 IN TXT \"{IDENTITY_WIRE[:200]}\" "
                    f"\"{IDENTITY_WIRE[200:]}\"\n"
                    "info.www IN TXT \"one\"\ninfo.www IN TXT \"two\"\n")
    status, out, err = cli("records", "import", str(zone), "--config", conf)
    assert status == 0, err
    assert out.startswith("imported 3 records")
    listed = cli("records", "list", "--config", conf)[1].splitlines()
    assert listed == [f"{IDENTITY_NAME}\t120\t{IDENTITY_WIRE}",
                      "info.www.mesh.test\t300\tone", "info.www.mesh.test\t300\ttwo"]


# --- dmfdns serve as a process -------------------------------------------------------------

class Serve:
    """A ``dmfdns serve`` subprocess; always stopped by the fixture's finalizer."""

    def __init__(self, argv, cwd):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dmfdns", "serve", *argv], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_serving(self, timeout=20.0) -> str:
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("stop with"):
                return "".join(lines)
        self.stop()
        raise AssertionError("node did not start: " + "".join(lines) +
                             self.process.stderr.read())

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@pytest.fixture
def serve_processes():
    started = []

    def start(argv, cwd):
        process = Serve(argv, cwd)
        started.append(process)
        return process
    yield start
    for process in started:
        process.stop(signal.SIGKILL)
        process.process.stdout.close()
        process.process.stderr.close()


def dig(port, *args) -> str:
    return subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=3",
                           *args], capture_output=True, text=True, timeout=20).stdout


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_prints_dig_hints_and_stops_cleanly(tmp_path, serve_processes, sig):
    port = free_port()
    conf = write_config(tmp_path, port)
    for name in ("b.mesh.test", "c.mesh.test"):     # store changes move the served serial
        assert cli("records", "put", name, "v", "--config", str(conf))[0] == 0
    node = serve_processes(["--config", str(conf)], tmp_path)
    out = node.wait_serving()
    assert f"dig @127.0.0.1 -p {port} mesh.test SOA" in out
    served_serial = dig(port, "+short", "mesh.test", "SOA").split()[2]
    assert int(served_serial) > 1
    answer = dig(port, "mesh.test", "SOA", "+norec")
    assert "status: NOERROR" in answer and "flags: qr aa;" in answer
    assert "+tcp" in out and "ns1.mesh.test." in dig(port, "+tcp", "+short", "mesh.test", "NS")
    assert node.stop(sig) == 0
    err = node.process.stderr.read()
    assert "dmfdns stopped" in err and "Traceback" not in err
    assert f"zones: mesh.test (serial {served_serial})" in err   # the one served
    # The lock is released: the records CLI may write again.
    assert cli("records", "put", "a.mesh.test", "v", "--config", str(conf))[0] == 0


@pytest.mark.integration
def test_serve_refuses_a_second_node_on_the_same_data_and_a_busy_port(tmp_path,
                                                                       serve_processes):
    port = free_port()
    conf = write_config(tmp_path, port)
    first = serve_processes(["--config", str(conf)], tmp_path)
    first.wait_serving()
    same_dir = serve_processes(["--config", str(conf)], tmp_path)
    assert same_dir.process.wait(timeout=20) == 1
    err = same_dir.process.stderr.read()
    assert err.count("\n") == 1 and "in use by a running dmfdns node" in err
    other = tmp_path / "other"
    other.mkdir()
    busy = serve_processes(["--config", str(write_config(other, port))], other)
    assert busy.process.wait(timeout=20) == 1
    err = busy.process.stderr.read()
    assert err == f"dmfdns: cannot listen on 127.0.0.1:{port} (TCP): Address already in " \
                  "use\n"
    status, _, err = cli("records", "put", "a.mesh.test", "v", "--config", str(conf))
    assert status == 1 and "refusing to write" in err
    assert first.process.poll() is None


@pytest.mark.integration
def test_serve_without_arguments_uses_the_embedded_default(tmp_path, serve_processes):
    """The quickstart: any directory, zone mesh.test on 127.0.0.1:5353, ./dmfdns-data."""
    node = serve_processes([], tmp_path)
    try:
        out = node.wait_serving()
    except AssertionError as failure:
        # Another program holds 5353 here: that must be the one clear error line.
        assert node.process.returncode == 1
        assert "cannot listen on 127.0.0.1:5353" in str(failure)
        return
    assert "dig @127.0.0.1 -p 5353 mesh.test SOA" in out
    assert "status: NOERROR" in dig(5353, "mesh.test", "SOA")
    assert (tmp_path / "dmfdns-data" / "data.mdb").exists()
    assert node.stop() == 0


def test_check_config_reads_the_secret_files(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text(f'zones = ["{ZONE}"]\n[http]\nauth_mode = "legacy"\n'
                    'operator_token_file = "missing.token"\n')
    status, _, err = cli("check-config", str(conf))
    assert status == 1 and "missing.token" in err and "cannot read" in err
    (tmp_path / "missing.token").write_text("s3cret\n")
    assert cli("check-config", str(conf))[0] == 0


@pytest.mark.integration
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.7, 1.2])
def test_ctrl_c_while_starting_ends_quietly(tmp_path, delay):
    """SIGINT while the command imports its modules, builds the node or runs: exit 130
    (interrupted before serving) or 0 (stopped cleanly), never a traceback. The delay is
    counted from the first of dmfdns's own modules imported (``-X importtime`` says when),
    i.e. from inside ``main``: an interrupt before that lands in Python's start-up or in
    runpy, where no program can catch it (a few milliseconds on an idle machine).
    Port 0: a port picked beforehand can be taken by a parallel test, and a node that fails
    to bind exits by itself, so the late SIGINT meets Python's finalization, which has put
    back the default action (death by signal, exit -2)."""
    conf = write_config(tmp_path, 0)
    process = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "dmfdns", "serve",
                                "--config", str(conf)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if "| dmfdns." in line or "|   dmfdns." in line or " dmfdns." in line:
            break
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()              # never leave a node running behind a failed test
        process.communicate()
        pytest.fail("the node did not stop on SIGINT")
    assert process.returncode in (0, 130), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


@pytest.mark.parametrize("command, words", [
    ("demo", "three dmfdns nodes"), ("keygen", "operator Ed25519 key"),
    ("check-config", "as dmfdns serve would"), ("serve", "Run a dmfdns node")])
def test_commands_explain_themselves_in_their_help(capsys, command, words):
    assert cli(command, "--help")[0] == 0
    assert words in " ".join(capsys.readouterr().out.split())
