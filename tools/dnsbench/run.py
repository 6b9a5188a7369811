"""The benchmark's steps: prepare data, start and pin the servers, verify, measure rounds.

Each measured run records what is needed to judge it afterwards: dnsperf's figures, the
server's CPU share, dnsperf's CPU share, per-CPU busy and steal percentages, and how many
answers carried the rcode the query file expects.
"""

import os
import socket
import time
from dataclasses import dataclass

from . import dmfdns_node, dnsperf, knot, procs, verify, zonegen

READY_TIMEOUT = 60.0


class BenchError(Exception):
    """A step failed; the message says which and where to look."""


@dataclass
class Server:
    label: str
    port: int
    proc: procs.Proc
    mode: str = "udp"          # dnsperf's transport to this server: udp, tcp or dot


@dataclass
class Workload:
    data: zonegen.BenchData
    query_file: str
    distinct_file: str         # the same lines, each name in a random letter case
    line_rcodes: list          # the rcode each query-file line must get, in file order
    name_rcodes: dict          # the same by name, for dnsperf's -v lines
    zone_file: str
    apex_file: str


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise BenchError("no free port on 127.0.0.1")


def prepare(workdir, *, zone, names, queries, hit_share, ttl, seed) -> Workload:
    data = zonegen.generate(zone, names, seed)
    lines = zonegen.query_lines(data, queries, hit_share, seed)
    paths = {key: os.path.join(workdir, name) for key, name in (
        ("query_file", "queries.txt"), ("distinct_file", "queries-distinct.txt"),
        ("zone_file", f"{zone}.zone"), ("apex_file", f"{zone}.apex.zone"))}
    zonegen.write_queries(paths["query_file"], lines)
    zonegen.write_queries(paths["distinct_file"], zonegen.distinct_lines(lines, seed))
    zonegen.write_zone_file(paths["zone_file"], data, ttl)
    zonegen.write_apex_zone(paths["apex_file"], zone, ttl)
    name_rcodes = {name: "NOERROR" for name in data.rrsets}
    name_rcodes.update({name: "NXDOMAIN" for name in data.misses})
    line_rcodes = [name_rcodes[line.split()[0]] for line in lines]
    return Workload(data, line_rcodes=line_rcodes, name_rcodes=name_rcodes, **paths)


def start_knot(group, workdir, work: Workload, cpu, udp_workers: int = 1) -> Server:
    knot_dir = os.path.join(workdir, f"knot-{udp_workers}")
    port = free_port()
    config = knot.write_config(knot_dir, port=port, zone=work.data.zone,
                               zone_file=work.zone_file, udp_workers=udp_workers)
    proc = group.start("knot", knot.argv(config), cpu=cpu,
                       log_path=os.path.join(workdir, f"knot-{udp_workers}.log"))
    return Server("knot", port, proc)


@dataclass
class DmfdnsNode:
    config: str
    dns_port: int
    http_port: int
    import_seconds: float


def load_dmfdns(workdir, work: Workload, ttl: int, tls=None) -> DmfdnsNode:
    """Write the node config and load the records into its store (no admission: see
    ``dmfdns_node``); ``tls`` as ``dmfdns_node.write_config`` takes it."""
    node_dir = os.path.join(workdir, "dmfdns")
    os.makedirs(node_dir, exist_ok=True)
    dns_port, http_port = free_port(), free_port()
    config = dmfdns_node.write_config(node_dir, dns_port=dns_port, http_port=http_port,
                                      zone_file=work.apex_file, tls=tls)
    started = time.monotonic()
    try:
        dmfdns_node.load_records(config, work.data.rrsets, ttl=ttl, now=time.time())
    except Exception as err:     # StoreError, NodeError, ConfigError: say which and stop
        raise BenchError(f"loading the records into dmfdns failed: {err}") from None
    return DmfdnsNode(config, dns_port, http_port, time.monotonic() - started)


def start_dmfdns(group, workdir, node: DmfdnsNode, cpu) -> Server:
    proc = group.start("dmfdns", dmfdns_node.serve_argv(node.config), cpu=cpu,
                       log_path=os.path.join(workdir, os.path.basename(node.config) + ".log"))
    return Server("dmfdns", node.dns_port, proc)


def with_workers(workdir, node: DmfdnsNode, work: Workload, workers: int) -> DmfdnsNode:
    """Another config for the same store (loaded once) with ``[dns] workers``."""
    node_dir = os.path.join(workdir, "dmfdns")
    dns_port, http_port = free_port(), free_port()
    config = dmfdns_node.write_config(node_dir, dns_port=dns_port, http_port=http_port,
                                      zone_file=work.apex_file, workers=workers,
                                      name=f"dmfdns-{workers}.toml")
    return DmfdnsNode(config, dns_port, http_port, node.import_seconds)


def wait_ready(server: Server, probe_name, cpu) -> None:
    """Wait (bounded) until the server answers, then pin all its threads to ``cpu`` and
    check that every thread is really allowed only there."""
    up = procs.wait_until(lambda: not server.proc.alive()
                          or verify.is_up(server.port, probe_name), READY_TIMEOUT, 0.2)
    if not up or not server.proc.alive():
        raise BenchError(f"{server.label} did not answer on 127.0.0.1:{server.port} within "
                         f"{READY_TIMEOUT:.0f} s; its log ends:\n{server.proc.log_tail()}")
    server.proc.pin_all_threads(cpu)
    check_pinned(server, cpu)


def check_pinned(server: Server, cpu) -> None:
    allowed = server.proc.thread_cpus()
    if allowed != {str(cpu)}:
        raise BenchError(f"{server.label}: threads allowed on CPUs {sorted(allowed)}, "
                         f"not only on CPU {cpu}")


def expected_counts(line_rcodes, sent) -> dict:
    """How many of the first ``sent`` queries expect each rcode; dnsperf starts at the top
    of the file each run and wraps around."""
    counts = {}
    cycles, rest = divmod(sent, len(line_rcodes))
    for index, rcode in enumerate(line_rcodes):
        counts[rcode] = counts.get(rcode, 0) + cycles + (1 if index < rest else 0)
    return counts


def measure(server: Server, work: Workload, *, seconds, cpu, max_qps=None, verbose=False,
            clients=20, outstanding=100, log_path, query_file=None, extra=(),
            mode=None) -> dict:
    """One dnsperf run against ``server`` (``query_file`` instead of the workload's,
    ``extra`` dnsperf flags, ``mode`` instead of the server's transport), with the CPU
    accounting around it."""
    argv = dnsperf.command(port=server.port, query_file=query_file or work.query_file,
                           seconds=seconds, clients=clients, outstanding=outstanding,
                           max_qps=max_qps, verbose=verbose, cpu=cpu,
                           mode=mode or server.mode, extra=extra)
    cpus_before, server_before = procs.cpu_times(), server.proc.cpu_seconds()
    try:
        result = dnsperf.run(argv, seconds=seconds, output_path=log_path,
                             expected_rcodes=work.name_rcodes if verbose else None)
    except dnsperf.DnsperfError as err:
        raise BenchError(f"against {server.label}: {err}") from None
    server_cpu = server.proc.cpu_seconds() - server_before
    busy = procs.busy_percent(cpus_before, procs.cpu_times())
    if not server.proc.alive():
        raise BenchError(f"{server.label} died during a run; its log ends:\n"
                         f"{server.proc.log_tail()}")
    expected = expected_counts(work.line_rcodes, result.sent)
    matched = sum(min(result.rcodes.get(code, 0), count) for code, count in expected.items())
    span = max(result.runtime_s, 1e-9)
    server_pct = 100 * server_cpu / span
    client_pct = 100 * result.client_cpu_s / span
    return {
        "server": server.label, "qps": round(result.qps, 1), "sent": result.sent,
        "completed": result.completed, "lost": result.lost,
        "answered_share": round(result.completed / max(result.sent, 1), 4),
        "expected_rcode_share": round(matched / max(result.sent, 1), 4),
        "rcodes": result.rcodes, "avg_ms": result.avg_ms, "max_ms": result.max_ms,
        "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
        "verbose_rcode_share": (round(result.rcode_matches / result.verbose_answers, 4)
                                if result.verbose_answers else None),
        "server_cpu_pct": round(server_pct, 1), "client_cpu_pct": round(client_pct, 1),
        # Throughput per second of server CPU: less sensitive to other tenants than qps.
        "qps_per_cpu": round(result.qps / (server_pct / 100), 1) if server_pct > 0 else None,
        # Everything else on the box (other tenants, the kernel): the noise indicator.
        "other_cpu_pct": round(max(sum(b for b, _ in busy) - server_pct - client_pct, 0), 1),
        "cpu_busy_pct": [b for b, _ in busy], "cpu_steal_pct": [s for _, s in busy],
        "rss_mib": round(server.proc.rss_kib() / 1024, 1),
        "max_qps": max_qps, "seconds": seconds,
    }
