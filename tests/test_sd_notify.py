"""The systemd notification protocol over a real unix datagram socket (dmfdns.sd_notify)."""

import socket

from twisted.internet import task

from dmfdns.config import service_manager_environment
from dmfdns.sd_notify import Notifier


def listening(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    return sock


def test_ready_reloading_and_stopping_arrive_as_datagrams(tmp_path):
    with listening(tmp_path / "notify") as sock:
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")}, pid=42)
        assert notifier.ready("serving") and notifier.reloading() and notifier.stopping()
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving"
        reloading = sock.recv(4096).decode().split("\n")
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert int(reloading[1].split("=")[1]) > 0
        assert sock.recv(4096) == b"STOPPING=1"
        assert notifier.sent == 3


def test_an_abstract_socket_name_starts_with_an_at_sign(tmp_path):
    name = f"dmfdns-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}, pid=1).ready()
        assert sock.recv(100) == b"READY=1"


def test_without_notify_socket_nothing_is_sent_and_a_dead_socket_is_counted(tmp_path):
    assert not Notifier({}, pid=1).ready()
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")}, pid=1)
    assert not gone.ready() and gone.failed == 1


def test_the_watchdog_pings_at_half_the_interval_for_this_process_only(tmp_path):
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
    with listening(tmp_path / "notify") as sock:
        clock = task.Clock()
        loop = Notifier({**env, "WATCHDOG_PID": "7"}, pid=7).start_watchdog(clock)
        assert sock.recv(100) == b"WATCHDOG=1"       # at once
        clock.advance(1.0)
        assert sock.recv(100) == b"WATCHDOG=1"       # then every second
        loop.stop()
    assert Notifier({**env, "WATCHDOG_PID": "8"}, pid=7).start_watchdog(task.Clock()) is None
    assert Notifier({"NOTIFY_SOCKET": env["NOTIFY_SOCKET"]}, pid=7).start_watchdog(
        task.Clock()) is None


def test_only_the_notification_variables_are_read_from_the_environment():
    environ = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1", "HOME": "/root",
               "DMFDNS_HOME": "/tmp"}
    assert service_manager_environment(environ) == {"NOTIFY_SOCKET": "/run/x",
                                                    "WATCHDOG_USEC": "1"}
