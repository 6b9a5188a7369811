"""A data directory the node cannot use is one line and exit 1, from ``check-config``,
``serve`` and the admin commands alike; root is refused in a directory that belongs to a
service user; ``records put`` without --config does not create a store by accident."""

import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from dmfdns.cli import run

NOW = 1_800_000_000.0
ZONE = pathlib.Path(__file__).resolve().parents[1] / "dmfdns" / "defaults" / "mesh.test.zone"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="switching users needs root and setpriv")


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    # serve refuses before it touches the reactor: a placeholder is enough.
    status = run(list(argv), now=NOW, get_reactor=object, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def config(tmp_path, data_dir) -> str:
    path = tmp_path / "node.toml"
    path.write_text(f'zones = ["{ZONE}"]\n[node]\ndata_dir = "{data_dir}"\n[store]\n'
                    'map_size = "8MiB"\n[dns]\nlisten = ["127.0.0.1:0"]\n[http]\nlisten = []\n')
    path.chmod(0o644)
    return str(path)


def one_line_failure(status, err) -> str:
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", [["check-config"], ["serve", "--config"],
                                     ["records", "list", "--config"]])
def test_a_file_as_data_dir_is_one_line_and_exit_1(tmp_path, command):
    (tmp_path / "afile").write_text("")
    status, _, err = cli(*command, config(tmp_path, tmp_path / "afile"))
    assert "is not a directory" in one_line_failure(status, err)


@pytest.fixture
def shared(tmp_path):
    """A directory the unprivileged user can reach (pytest's own are root-only)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="dmfdns-datadir-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def as_nobody(tmp_path, *argv):
    done = subprocess.run([*AS_NOBODY, sys.executable, "-m", "dmfdns", *argv],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr


@needs_root
@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_data_dir_the_service_user_cannot_write_is_refused(shared, command):
    tmp_path = shared
    data = tmp_path / "data"
    data.mkdir(mode=0o755)                      # root's: nobody cannot write it
    conf = config(tmp_path, data)
    argv = [command, conf] if command == "check-config" else [command, "--config", conf]
    status, err = as_nobody(tmp_path, *argv)
    assert "is not writable by nobody (owner root)" in one_line_failure(status, err)


@needs_root
def test_a_root_owned_store_file_in_the_service_dir_says_how_to_fix_it(shared):
    tmp_path = shared
    data = tmp_path / "data"
    data.mkdir()
    (data / "data.mdb").write_bytes(b"")        # left behind by a command run as root
    shutil.chown(data, "nobody")
    status, err = as_nobody(tmp_path, "check-config", config(tmp_path, data))
    assert f"{data / 'data.mdb'} is not writable by nobody (owner root): chown -R nobody" \
        in one_line_failure(status, err)


@needs_root
def test_root_is_refused_in_a_data_dir_that_belongs_to_the_service_user(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.chown(data, "nobody")
    status, _, err = cli("records", "list", "--config", config(tmp_path, data))
    assert "belongs to nobody: run dmfdns as that user (e.g. sudo -u nobody dmfdns ...)" \
        in one_line_failure(status, err)
    assert list(data.iterdir()) == []           # nothing created as root


def test_a_config_without_zones_fails_check_config(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(f'zones = []\n[node]\ndata_dir = "{tmp_path / "data"}"\n')
    status, _, err = cli("check-config", str(path))
    assert "no zone files configured" in one_line_failure(status, err)


def test_records_put_without_config_does_not_create_a_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = cli("records", "put", "x.mesh.test", "v")
    assert "no store at" in one_line_failure(status, err) and "--config FILE" in err
    assert not (tmp_path / "dmfdns-data").exists()
