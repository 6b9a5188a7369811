"""Smoke run of tools/bench_dns: a tiny zone, one short round per server, end to end.

It proves the benchmark still works (data generation, Knot, the dmfdns import and serve,
the answer check, dnsperf parsing, the report); the figures themselves are meaningless at
this size and are not asserted.
"""

import json
import pathlib
import re
import subprocess
import sys

import pytest

TOOLS = pathlib.Path(__file__).resolve().parent.parent / "tools"
BENCH = TOOLS / "bench_dns"
sys.path.insert(0, str(TOOLS))

from dnsbench import dnsperf, run  # noqa: E402

DNSPERF_OUTPUT = """\
[Status] Sending queries (to 127.0.0.1:5399)
> NOERROR chunk-0004-59a00d5709a2.mesh.test TXT 0.000400
> NXDOMAIN id-795156345556f84a.mesh.test TXT 0.000100
> NOERROR slot-6.mb-3f26d9288e48.mesh.test TXT 0.000200
> NOERROR id-0000000000000000.mesh.test TXT 0.003000
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         4
  Queries completed:    4 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 3 (75.00%), NXDOMAIN 1 (25.00%)
  Average packet size:  request 61, response 366
  Run time (s):         2.000160
  Queries per second:   1999.840013

  Average Latency (s):  0.000925 (min 0.000100, max 0.003000)
  Latency StdDev (s):   0.000108
"""


@pytest.mark.slow
@pytest.mark.ci
def test_bench_dns_runs_end_to_end(tmp_path):
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--names", "400", "--queries", "2000", "--rounds", "1",
         "--seconds", "2", "--warmup", "1", "--latency-seconds", "1", "--latency-qps", "500",
         "--verify-sample", "20", "--settle", "0", "--workdir", str(tmp_path / "work"),
         "--json", str(results)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]

    last_line = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio dmfdns/knot qps: \d+\.\d\d", last_line), done.stdout

    report = json.loads(results.read_text())
    assert set(report["summary"]) == {"knot", "dmfdns"}
    for label, summary in report["summary"].items():
        assert summary["qps_median"] > 0, label
        assert summary["answered_share_min"] >= 0.95, (label, summary)
        assert summary["expected_rcode_share_min"] >= 0.95, (label, summary)
    latency_runs = [r for r in report["runs"] if r["kind"] == "latency"]
    assert {r["server"] for r in latency_runs} == {"knot", "dmfdns"}
    for run in latency_runs:
        assert run["verbose_rcode_share"] >= 0.95, run
    assert report["ratio"] == pytest.approx(
        report["summary"]["dmfdns"]["qps_median"] / report["summary"]["knot"]["qps_median"])
    # Every traffic shape was measured on both servers, answered, and reported with a ratio.
    shapes = {row["shape"]: row for row in report["shapes"]}
    assert set(shapes) == {"plain", "cookie", "tcp", "writes", "miss", "workers2"}
    for name, row in shapes.items():
        assert set(row["servers"]) == {"knot", "dmfdns"}, name
        assert row["ratio"] > 0, name
        for label, summary in row["servers"].items():
            assert summary["answered_share_min"] >= 0.95, (name, label, summary)
            assert summary["expected_rcode_share_min"] >= 0.95, (name, label, summary)
    assert shapes["writes"]["writes_accepted"] > 0
    assert shapes["writes"]["writes_accepted"] == shapes["writes"]["writes_sent"]
    assert "| tcp: TCP" in done.stdout and "| workers2:" in done.stdout


def test_bench_dns_rejects_an_unknown_shape():
    done = subprocess.run([sys.executable, str(BENCH), "--shapes", "plain,dot"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown shape" in done.stderr


def test_distinct_spellings_keep_the_names_and_differ():
    from dnsbench import zonegen
    lines = [f"chunk-{i:04d}-abcdefabcdef.mesh.test TXT" for i in range(500)]
    spelled = zonegen.distinct_lines(lines, seed=1)
    assert [line.lower() for line in spelled] == [line.lower() for line in lines]
    assert len(set(spelled)) == len(spelled) and spelled != lines


def test_bench_dns_rejects_an_unknown_server():
    done = subprocess.run([sys.executable, str(BENCH), "--servers", "bind"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--servers" in done.stderr


def test_dnsperf_summary_and_per_query_lines_are_parsed():
    expected = {"chunk-0004-59a00d5709a2.mesh.test": "NOERROR",
                "id-795156345556f84a.mesh.test": "NXDOMAIN",
                "slot-6.mb-3f26d9288e48.mesh.test": "NOERROR",
                "id-0000000000000000.mesh.test": "NXDOMAIN"}
    result = dnsperf.parse(DNSPERF_OUTPUT.splitlines(), expected)
    assert (result.sent, result.completed, result.lost) == (4, 4, 0)
    assert result.qps == pytest.approx(1999.84, abs=0.01)
    assert result.rcodes == {"NOERROR": 3, "NXDOMAIN": 1}
    assert (result.avg_ms, result.min_ms, result.max_ms) == (0.925, 0.1, 3.0)
    assert result.p50_ms == pytest.approx(0.3)
    assert result.p99_ms == pytest.approx(3.0)
    assert (result.rcode_matches, result.verbose_answers) == (3, 4)


def test_expected_rcodes_follow_the_query_file_with_wrap_around():
    lines = ["NOERROR", "NXDOMAIN", "NOERROR"]
    assert run.expected_counts(lines, 2) == {"NOERROR": 1, "NXDOMAIN": 1}
    assert run.expected_counts(lines, 7) == {"NOERROR": 5, "NXDOMAIN": 2}


def test_bench_dnssec_prints_every_row():
    """tools/bench_dnssec, tiny: a signature and each query kind per algorithm, and the
    flood makes one signature per query."""
    done = subprocess.run([sys.executable, str(TOOLS / "bench_dnssec"), "--names", "50",
                           "--count", "20", "--repeat", "1", "--cache-entries", "10"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line.split(" | ") for line in done.stdout.splitlines()[2:]]
    assert [row[1] for row in rows] == [
        "one signature", "positive TXT, no DO",
        "positive TXT, DO, signed on the fly (signature cache warm)",
        "sign one name at write time (1 value)",
        "positive TXT, DO, stored RRSIGs, lean path (no answer cache)",
        "positive TXT, DO, stored RRSIGs, answer cache",
        "random-subdomain flood, DO"] * 2
    assert all(float(row[2]) > 0 for row in rows)
    assert "21 signatures made" in done.stdout and "cache 10 of 10" in done.stdout
    lean = [row[3] for row in rows if row[1].endswith("lean path (no answer cache)")]
    assert lean == ["20 spliced from the store, 0 signed on the fly |"] * 2


@pytest.mark.slow
@pytest.mark.ci
def test_bench_dnssec_knot_runs_end_to_end(tmp_path):
    """tools/bench_dnssec_knot, tiny: both servers sign (checked before the runs), answer
    every DO query NOERROR, and a ratio is printed."""
    done = subprocess.run(
        [sys.executable, str(TOOLS / "bench_dnssec_knot"), "--names", "300", "--queries",
         "1000", "--rounds", "1", "--seconds", "2", "--warmup", "1",
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio dmfdns/knot qps: \d+\.\d\d", lines[-2]), done.stdout
    assert "| knot |" in done.stdout and "| dmfdns |" in done.stdout
    # Every positive DO answer the node's fast path made carried the stored RRSIGs.
    assert re.search(r"\d+ with stored RRSIGs, 0 left to on-the-fly", done.stdout)
    assert "stored RRSIGs for 300 names" in done.stderr
