"""tools/dev-cluster up/status/down on its fixed ports (slow; not in CI, whose machine may
use those ports for something else)."""

import pathlib
import socket
import subprocess

import pytest

TOOL = pathlib.Path(__file__).resolve().parents[2] / "tools" / "dev-cluster"
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def tool(*args, timeout=60):
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=timeout)


def test_up_is_idempotent_status_reports_and_down_stops_what_it_started():
    if any(busy(port) for port in (8401, 8402, 8403)):
        pytest.skip("the dev cluster's ports are in use on this machine")
    try:
        first = tool("up")
        assert first.returncode == 0, first.stderr
        again = tool("up")
        assert again.returncode == 0 and again.stdout.count("already running") == 3
        status = tool("status")
        assert status.returncode == 0 and status.stdout.count("ready") == 3
    finally:
        down = tool("down")
    assert down.returncode == 0 and down.stdout.count("stopped") == 3
    assert tool("status").returncode == 1
    assert not any(busy(port) for port in (8401, 8402, 8403))
