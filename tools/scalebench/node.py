"""A ``dmfdns serve`` process for the scale benchmarks: config, start, wait, scrape, stop.

The node runs as an operator runs it, from a generated config that keeps the defaults
except for addresses, paths, the map size, the HTTP rate limit (off: the benchmarks load
it from one address) and, for a cluster, ``[cluster]``.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from dmfdns.config import defaults_dir
# One error class and one free-port finder for both benchmark packages (tools/ is on the
# path of every script that imports this).
from dnsbench.run import BenchError, free_port  # noqa: F401  (nodes.free_port for the scripts)

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN|[+-]Inf)$")


def write_config(directory: str, *, node_id: str, dns_port: int, http_port: int,
                 map_size: str = "8GiB", cluster: dict | None = None,
                 stall_log: str = "0s", dns: dict | None = None) -> str:
    lines = [f"zones = [{json.dumps(str(defaults_dir() / 'mesh.test.zone'))}]",
             "[node]", f"node_id = {json.dumps(node_id)}",
             f"stall_log = {json.dumps(stall_log)}",
             f"data_dir = {json.dumps(os.path.join(directory, 'data'))}",
             "[store]", f"map_size = {json.dumps(map_size)}",
             "[dns]", f'listen = ["127.0.0.1:{dns_port}"]',
             *(f"{key} = {json.dumps(value)}" for key, value in (dns or {}).items()),
             "[http]", f'listen = ["127.0.0.1:{http_port}"]', "rate_limit = 0"]
    if cluster:
        lines.append("[cluster]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in cluster.items()]
    path = os.path.join(directory, "dmfdns.toml")
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return path


class NodeProcess:
    """``python -m dmfdns serve --config PATH`` in its own session, log in the directory;
    with ``cpus``, every thread of it runs only on those CPUs."""

    def __init__(self, config_path: str, http_port: int, dns_port: int, label: str,
                 cpus: set | None = None):
        self.label, self.http_port, self.dns_port = label, http_port, dns_port
        self.log_path = os.path.join(os.path.dirname(config_path), f"{label}.log")
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "dmfdns", "serve", "--config", config_path],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds until ``/readyz`` answers 200; BenchError on exit or timeout."""
        return self.wait_ok("readyz", timeout, "not ready")

    def wait_ok(self, path: str, timeout: float, what: str, headers=None,
                every: float = 0.05) -> float:
        """Seconds until ``GET /path`` answers 200; BenchError (``what``) on exit or
        timeout."""
        started = time.monotonic()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/{path}",
                                         headers=headers or {})
        while time.monotonic() - started < timeout:
            if self.popen.poll() is not None:
                raise BenchError(f"{self.label} exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    if reply.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(every)
        raise BenchError(f"{self.label} {what} after {timeout:.0f} s: {self.log_tail()}")

    def metrics(self) -> dict:
        """``{name: value}`` summed over labels, from ``/metrics``."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            text = page.read().decode("utf-8", "replace")
        found = {}
        for match in map(_SAMPLE.match, text.splitlines()):
            if match:
                found[match.group(1)] = found.get(match.group(1), 0.0) + float(match.group(3))
        return found

    def labelled(self, metric: str) -> dict:
        """``{labels text: value}`` of one metric."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            text = page.read().decode("utf-8", "replace")
        return {m.group(2) or "": float(m.group(3)) for m in map(_SAMPLE.match,
                                                                  text.splitlines())
                if m and m.group(1) == metric}

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as log:
                return b"\n".join(log.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=grace)
        self._log.close()


def reference_ms(repeats: int = 5) -> float:
    """Milliseconds of a fixed pure-Python workload (dict and bytes work, as a node's per
    record path does), best of ``repeats``: the same code's figures on two days compare
    only as far as this does (the box's speed varies from day to day)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        table = {}
        for i in range(300_000):
            key = b"name-%d" % i
            table[key] = (i, key.upper())
            table.pop(b"name-%d" % (i - 100), None)
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def load_average() -> str:
    with open("/proc/loadavg") as load:
        return " ".join(load.read().split()[:3])
