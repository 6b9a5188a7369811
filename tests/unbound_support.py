"""Unbound, Debian's resolver, as a real resolver in front of a node under test: one
configuration writer and one process start and stop for every test that puts it there."""

import pathlib
import shutil
import signal
import subprocess

import pytest

# Loopback only, one thread, in the foreground, logging into its own directory; "test." is
# a special-use name (RFC 6761) that Unbound refuses by default, so it is let through.
SERVER = """server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    logfile: "{dir}/unbound.log"
    use-syslog: no
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    local-zone: "test." nodefault
"""


def write_config(work: pathlib.Path, port: int, *, stub: list[str],
                 modules: str = "iterator", server: tuple = (),
                 control_port: int | None = None) -> pathlib.Path:
    """``work/unbound.conf`` listening on ``port``: ``server`` adds lines to the server
    clause, ``stub`` is the stub-zone clause, ``control_port`` turns unbound-control on
    (plain, loopback) when given."""
    work.mkdir(parents=True, exist_ok=True)
    lines = [SERVER.format(port=port, dir=work).rstrip("\n"), f'    module-config: "{modules}"']
    lines += [f"    {line}" for line in server]
    lines.append("remote-control:")
    if control_port is None:
        lines.append("    control-enable: no")
    else:
        lines += ["    control-enable: yes", "    control-use-cert: no",
                  "    control-interface: 127.0.0.1", f"    control-port: {control_port}"]
    lines += ["stub-zone:", *[f"    {line}" for line in stub]]
    path = work / "unbound.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(conf: pathlib.Path, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    binary = shutil.which("unbound") or "/usr/sbin/unbound"
    if not pathlib.Path(binary).exists():
        pytest.fail("unbound is not installed (bash .ci/run installs it)")
    return subprocess.Popen([binary, "-d", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=stderr)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
