"""The systemd notification protocol (sd_notify(3)), written out: one datagram of
``KEY=VALUE`` lines to the unix socket named by ``$NOTIFY_SOCKET`` (layer 3).

A unit with ``Type=notify`` waits for ``READY=1`` before it counts the service as started;
``RELOADING=1`` ... ``READY=1`` brackets a reload; ``STOPPING=1`` says shutdown began; and
with ``WatchdogSec=`` systemd expects ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC``
microseconds, or it kills and restarts the service. Sent from the reactor, the watchdog
ping proves the reactor still turns: a blocked reactor stops pinging.

Without ``$NOTIFY_SOCKET`` (not under systemd) every call does nothing. A name starting with
``@`` is a socket in the abstract namespace. The environment is read once, when the
``Notifier`` is made (in ``dmfdns serve``), and passed in.
"""

import socket
import time

from twisted.internet import task


class Notifier:
    """Sends notifications to the socket named in ``environ`` (if any)."""

    def __init__(self, environ, pid: int):
        self.address = _address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(environ, pid)
        self.sent = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (e.g. ``"READY=1"``) as one datagram; False if not sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError:
            self.failed += 1
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *_status(status))

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd match the reload (systemd 253's Type=notify-reload).
        return self.notify("RELOADING=1",
                           f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def start_watchdog(self, clock) -> task.LoopingCall | None:
        """Ping ``WATCHDOG=1`` from ``clock``'s reactor at half the interval systemd asks
        for (sd_watchdog_enabled(3)); None when systemd asks for no watchdog."""
        if self.address is None or self.watchdog_interval is None:
            return None
        loop = task.LoopingCall(self.notify, "WATCHDOG=1")
        loop.clock = clock
        loop.start(self.watchdog_interval / 2, now=True)
        return loop


def _address(name: str):
    if not name:
        return None
    if name.startswith("@"):
        return "\0" + name[1:]
    return name if name.startswith("/") else None


def _watchdog_interval(environ, pid: int) -> float | None:
    """Seconds from ``$WATCHDOG_USEC``, if meant for this process (``$WATCHDOG_PID``)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (watchdog_pid and watchdog_pid != str(pid)):
        return None
    return usec / 1e6


def _status(status: str) -> list[str]:
    return [f"STATUS={status}"] if status else []
