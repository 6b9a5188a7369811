"""The README's first command, verbatim, on Debian's own python3 in a fresh clone.

Debian 12's ``/usr/bin/python3`` is externally managed (PEP 668): ``pip install`` outside a
venv is refused. The quickstart must still install and start a node there, from nothing but
a clone, and the node must answer DNS. The command needs the package index (a network
namespace would cut it off), so it runs on the host's loopback with the default ports
5353/8053: the test holds a lock file so two runs on one machine take turns, and fails with
a clear message when something else holds those ports.
"""

import fcntl
import socket

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = pathlib.Path("/usr/bin/python3")
DRIVER = pathlib.Path(__file__).with_name("readme_driver.py")
INSTALL_TIMEOUT = 600.0

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.ci]


def readme_commands() -> list[str]:
    quickstart = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", quickstart, re.S)]


def test_the_readme_has_exactly_two_setup_commands_the_second_is_ci():
    commands = readme_commands()
    assert len(commands) == 2 and all("\n" not in command for command in commands)
    assert commands[1] == "bash .ci/run"


def debian_path(tmp_path: pathlib.Path) -> str:
    """A PATH whose first python3 is Debian's, then the usual system directories."""
    shim = tmp_path / "debian-python"
    shim.mkdir()
    (shim / "python3").symlink_to(DEBIAN_PYTHON)
    return os.pathsep.join([str(shim), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                            "/usr/bin", "/sbin", "/bin"])


def assert_default_ports_free() -> None:
    for kind, port in [(socket.SOCK_DGRAM, 5353), (socket.SOCK_STREAM, 5353),
                       (socket.SOCK_STREAM, 8053)]:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                pytest.fail(f"127.0.0.1:{port} is in use: stop what holds it and run again")


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="needs Debian's /usr/bin/python3")
def test_the_readme_first_command_serves_dns_from_a_fresh_clone_on_debian_python(tmp_path):
    marker = DEBIAN_PYTHON.parent.parent / "lib" / "python3.11" / "EXTERNALLY-MANAGED"
    assert marker.exists(), "the test is meant for Debian's externally managed python3"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("VIRTUAL_ENV", "PYTHON", "PYENV"))}
    env["PATH"] = debian_path(tmp_path)
    argv = [sys.executable, str(DRIVER), str(clone), str(INSTALL_TIMEOUT),
            readme_commands()[0]]
    with open("/tmp/dmfdns-readme-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert_default_ports_free()
        done = subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT + 60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["answer"] is not None, result["log"]
    assert "SOA" in result["answer"] and "mesh.test" in result["answer"]
    assert result["status"] == 0, result["log"]  # Ctrl-C stops the node cleanly
    venv_python = (clone / ".venv" / "bin" / "python").resolve()
    assert venv_python == DEBIAN_PYTHON.resolve(), "the venv is not Debian's python3"
    assert "Traceback" not in result["log"]
