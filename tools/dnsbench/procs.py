"""Server processes for the benchmark: start pinned, re-pin every thread, measure CPU, stop.

Every process runs in its own session so that stopping it reaches its children too; a
``ProcessSet`` stops everything it started on exit, also on Ctrl-C or an exception. All
waits are bounded.
"""

import os
import signal
import subprocess
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Proc:
    """One server process started under ``taskset -c CPU``, its output in ``log_path``."""

    def __init__(self, name, argv, *, cpu, log_path, cwd=None, env=None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            ["taskset", "-c", str(cpu), *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines=20) -> str:
        try:
            with open(self.log_path, "rb") as log:
                return b"\n".join(log.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def tree(self) -> list:
        """This process and its descendants (pids)."""
        return process_tree(self.pid)

    def pin_all_threads(self, cpu) -> None:
        """``taskset -a -pc CPU`` on every process of the tree: Knot moves its own UDP
        workers to a CPU of its choosing after start (docs/performance.md, Method)."""
        for pid in self.tree():
            subprocess.run(["taskset", "-a", "-pc", str(cpu), str(pid)], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)

    def thread_cpus(self) -> set:
        """The distinct ``Cpus_allowed_list`` values over every thread of the tree."""
        allowed = set()
        for pid in self.tree():
            for tid in _listdir(f"/proc/{pid}/task"):
                for line in _read_lines(f"/proc/{pid}/task/{tid}/status"):
                    if line.startswith("Cpus_allowed_list:"):
                        allowed.add(line.split(":", 1)[1].strip())
        return allowed

    def cpu_seconds(self) -> float:
        """user + system CPU time of the whole tree so far."""
        return sum(_proc_cpu_seconds(pid) for pid in self.tree())

    def rss_kib(self) -> int:
        total = 0
        for pid in self.tree():
            for line in _read_lines(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total

    def stop(self, grace=5.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds."""
        if self.alive():
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=grace)
        _signal_group(self.pid, signal.SIGKILL)  # stragglers left in the group
        self._log.close()


class ProcessSet:
    """Context manager that stops every process it started, whatever happens."""

    def __init__(self):
        self._procs = []

    def start(self, *args, **kwargs) -> Proc:
        proc = Proc(*args, **kwargs)
        self._procs.append(proc)
        return proc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc in reversed(self._procs):
            try:
                proc.stop()
            except Exception as err:  # keep stopping the others
                print(f"bench_dns: could not stop {proc.name} ({proc.pid}): {err}")
        return False


def process_tree(root: int) -> list:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        if not os.path.exists(f"/proc/{pid}"):
            continue
        pids.append(pid)
        for tid in _listdir(f"/proc/{pid}/task"):
            for line in _read_lines(f"/proc/{pid}/task/{tid}/children"):
                todo.extend(int(child) for child in line.split())
    return pids


def cpu_times() -> list:
    """Per-CPU ``(busy, total)`` jiffies from /proc/stat."""
    result = []
    for line in _read_lines("/proc/stat"):
        if line.startswith("cpu") and line[3:4].isdigit():
            fields = [int(x) for x in line.split()[1:]]
            idle = fields[3] + fields[4]
            steal = fields[7] if len(fields) > 7 else 0
            result.append((sum(fields[:8]) - idle - steal, sum(fields[:8]), steal))
    return result


def busy_percent(before, after) -> list:
    """Per-CPU ``(busy %, steal %)`` between two ``cpu_times()`` snapshots."""
    out = []
    for (b0, t0, s0), (b1, t1, s1) in zip(before, after):
        span = max(t1 - t0, 1)
        out.append((round(100 * (b1 - b0) / span, 1), round(100 * (s1 - s0) / span, 1)))
    return out


def wait_for_quiet(max_busy_pct, timeout, window=1.0) -> float:
    """Wait (at most ``timeout`` seconds) for a ``window`` in which all CPUs together are
    at most ``max_busy_pct`` busy (100 = one whole CPU); the last figure seen. Other
    tenants of a shared box come and go, and a run started in a lull is cleaner."""
    deadline = time.monotonic() + timeout
    while True:
        before = cpu_times()
        time.sleep(window)
        busy = sum(b for b, _ in busy_percent(before, cpu_times()))
        if busy <= max_busy_pct or time.monotonic() >= deadline:
            return round(busy, 1)


def _proc_cpu_seconds(pid) -> float:
    lines = _read_lines(f"/proc/{pid}/stat")
    if not lines:
        return 0.0
    fields = lines[0].rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS   # utime, stime


def _signal_group(pid, sig) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _listdir(path) -> list:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _read_lines(path) -> list:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def wait_until(predicate, timeout, interval=0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
