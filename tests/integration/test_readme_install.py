"""The README's first command, verbatim, on Debian's own python3 in a fresh clone.

Debian 12's ``/usr/bin/python3`` is externally managed (PEP 668): ``pip install`` outside a
venv is refused. The quickstart must still install and start a node there, from nothing but
a clone, and the node must answer DNS. The command runs in a fresh network namespace when
the test can make one (root), so the default ports 5353/8053 cannot collide with another
node on the machine; otherwise on the host's loopback.
"""

import json
import os
import pathlib
import re
import shutil
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


def in_own_network(argv: list[str]) -> list[str]:
    unshare = shutil.which("unshare")
    if os.geteuid() == 0 and unshare:
        return [unshare, "--net", *argv]
    return argv


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
    done = subprocess.run(in_own_network(argv), env=env, capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT + 60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["answer"] is not None, result["log"]
    assert "SOA" in result["answer"] and "mesh.test" in result["answer"]
    assert result["status"] == 0, result["log"]  # Ctrl-C stops the node cleanly
    venv_python = (clone / ".venv" / "bin" / "python").resolve()
    assert venv_python == DEBIAN_PYTHON.resolve(), "the venv is not Debian's python3"
    assert "Traceback" not in result["log"]
