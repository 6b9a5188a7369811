"""DNS load with dnsperf against a node: a query file of names that exist, a measured run
(qps), and a paced background run that reports the answers of every second."""

import re
import subprocess
import time

_QPS = re.compile(r"Queries per second:\s+([0-9.]+)")
_SECOND = re.compile(r"^([0-9]+\.[0-9]+): ([0-9.]+)$")


def query_file(path: str, names: list) -> str:
    with open(path, "w", encoding="ascii") as out:
        for name in names:
            out.write(f"{name} TXT\n")
    return path


def measure(port: int, queries: str, seconds: int = 5) -> float:
    """Uncapped qps of one dnsperf run (4 clients, 50 outstanding)."""
    done = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries,
                           "-l", str(seconds), "-c", "4", "-q", "50", "-t", "2"],
                          capture_output=True, text=True, timeout=seconds + 60)
    match = _QPS.search(done.stdout)
    if match is None:
        raise RuntimeError(f"dnsperf gave no rate: {done.stdout[-300:]} {done.stderr[-300:]}")
    return float(match.group(1))


def ask_each_once(port: int, queries: str, timeout: float = 900.0) -> float:
    """Ask every name of ``queries`` once (dnsperf through the file once, 4 clients, 50
    outstanding); the seconds it took."""
    started = time.monotonic()
    subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries, "-n", "1",
                    "-c", "4", "-q", "50", "-t", "2"],
                   capture_output=True, text=True, timeout=timeout, check=True)
    return time.monotonic() - started


def paced(port: int, queries: str, qps: int, seconds: int) -> subprocess.Popen:
    """A dnsperf run at ``qps`` for at most ``seconds``, printing each second's rate."""
    return subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries,
                             "-l", str(seconds), "-Q", str(qps), "-S", "1", "-c", "2",
                             "-q", "100", "-t", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def per_second(output: str, since: float = 0.0) -> list[float]:
    """The answered-per-second figures of a ``paced`` run's output, of the seconds that
    ended after ``since`` (Unix time: dnsperf stamps each line)."""
    return [float(m.group(2)) for m in map(_SECOND.match, output.splitlines())
            if m and float(m.group(1)) > since + 1.0]
