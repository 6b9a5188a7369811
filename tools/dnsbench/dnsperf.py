"""Run dnsperf pinned to the client CPU and read its statistics.

Flags as in docs/performance.md, Method: ``-e`` (EDNS0, 4096-byte buffer, so multi-value slot RRsets
are not truncated at 512 bytes), ``-c 20`` client sockets, ``-q 100`` outstanding queries,
``-t 5`` s timeout, ``-l`` seconds per run. Throughput runs are uncapped; latency runs add
``-Q RATE -v`` and p50/p99 come from the per-query lines, because dnsperf's summary only
has average, minimum and maximum.
"""

import re
import resource
import statistics
import subprocess
from dataclasses import dataclass, field

_NUMBERS = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "runtime_s": re.compile(r"Run time \(s\):\s+([\d.]+)"),
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
}
_LATENCY = re.compile(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)")
_RCODES = re.compile(r"Response codes:\s+(.*)")
_RCODE_ITEM = re.compile(r"([A-Z]+) (\d+) \(")
_VERBOSE_LINE = re.compile(r"^> ([A-Z]+) (\S+) (\S+) ([\d.]+)$")


class DnsperfError(Exception):
    """dnsperf failed or overran its time; the message says where its output is."""


@dataclass
class Result:
    sent: int = 0
    completed: int = 0
    lost: int = 0
    runtime_s: float = 0.0
    qps: float = 0.0
    avg_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    rcodes: dict = field(default_factory=dict)
    client_cpu_s: float = 0.0
    # Latency runs only: answers whose rcode matched what the query file expects.
    rcode_matches: int | None = None
    verbose_answers: int | None = None


def command(*, port, query_file, seconds, clients=20, outstanding=100, timeout=5,
            max_qps=None, verbose=False, cpu=0, mode="udp", extra=()) -> list:
    """``mode``: dnsperf's transport, ``udp``, ``tcp`` or ``dot`` (DNS over TLS); ``extra``:
    more dnsperf flags (an EDNS option)."""
    argv = ["taskset", "-c", str(cpu), "dnsperf", "-s", "127.0.0.1", "-p", str(port),
            "-m", mode, "-d", str(query_file), "-e", "-l", str(seconds), "-c", str(clients),
            "-q", str(outstanding), "-t", str(timeout)]
    if max_qps:
        argv += ["-Q", str(max_qps)]
    if verbose:
        argv.append("-v")
    return argv + list(extra)


def run(argv, *, seconds, output_path, expected_rcodes=None) -> Result:
    """Run dnsperf with its output in ``output_path`` and parse it. The wait is bounded
    by the run length plus the query timeout plus slack. ``expected_rcodes`` maps a
    query name to the rcode it must get (checked on ``-v`` lines)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(output_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise DnsperfError(f"dnsperf ran over {seconds + 30} s; see {output_path}") \
                from None
        except BaseException:      # Ctrl-C: never leave dnsperf behind
            proc.kill()
            proc.wait(timeout=10)
            raise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise DnsperfError(f"dnsperf exited {proc.returncode}; see {output_path}")
    with open(output_path, encoding="utf-8", errors="replace") as out:
        result = parse(out, expected_rcodes)
    result.client_cpu_s = round((after.ru_utime + after.ru_stime)
                                - (before.ru_utime + before.ru_stime), 3)
    return result


def parse(lines, expected_rcodes=None) -> Result:
    """A ``Result`` from dnsperf's output lines (the summary, and ``-v`` lines if any)."""
    result, latencies, matches = Result(), [], 0
    for line in lines:
        line = line.rstrip("\n")
        verbose = _VERBOSE_LINE.match(line)
        if verbose:
            rcode, name = verbose.group(1), verbose.group(2)
            latencies.append(float(verbose.group(4)) * 1000)
            name = name.rstrip(".").lower()
            if expected_rcodes is not None and expected_rcodes.get(name) == rcode:
                matches += 1
            continue
        _parse_summary_line(result, line)
    if latencies:
        latencies.sort()
        result.p50_ms = round(statistics.median(latencies), 4)
        result.p99_ms = round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 4)
        result.verbose_answers = len(latencies)
        if expected_rcodes is not None:
            result.rcode_matches = matches
    return result


def _parse_summary_line(result, line) -> None:
    for key, pattern in _NUMBERS.items():
        match = pattern.search(line)
        if match:
            setattr(result, key, type(getattr(result, key))(float(match.group(1))))
    latency = _LATENCY.search(line)
    if latency:
        result.avg_ms, result.min_ms, result.max_ms = (
            round(float(x) * 1000, 4) for x in latency.groups())
    codes = _RCODES.search(line)
    if codes:
        result.rcodes = {k: int(v) for k, v in _RCODE_ITEM.findall(codes.group(1))}
