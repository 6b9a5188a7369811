"""Smoke runs of tools/bench_million and tools/bench_publish at a tiny size, end to end.

They prove the benchmarks still work (valid record generation that passes admission, the
import, serving, an empty peer's catch-up with DNS paced against the source, the restart's
full-set match, concurrent publishers answered 201); the figures are meaningless at this
size and only their presence and sanity are asserted.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

TOOLS = pathlib.Path(__file__).resolve().parent.parent / "tools"
pytestmark = [pytest.mark.slow, pytest.mark.ci, pytest.mark.integration]


@pytest.mark.skipif(shutil.which("dnsperf") is None, reason="dnsperf (Debian) is needed")
def test_bench_million_runs_end_to_end_at_a_small_size(tmp_path):
    out = tmp_path / "figures.json"
    workdir = tmp_path / "bench"
    done = subprocess.run([sys.executable, str(TOOLS / "bench_million"), "--records", "3000",
                           "--file-records", "1500", "--small", "1000", "--dns-seconds", "1",
                           "--rounds", "2", "--workdir", str(workdir),
                           "--qps", "300", "--catch-up-limit", "240", "--warm-all",
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["records"] == 3000 and figures["import_rate"] > 0
    assert 0 < figures["catch_up_seconds"] < 240
    assert figures["qps_big"] > 0 and figures["qps_small"] > 0
    assert figures["a_warm_all_seconds"] > 0 and "every name asked once" in done.stdout
    for shape in ("shared", "own", "zipf"):
        compared = figures["shapes"][shape]
        assert len(compared["runs"]["big"]) == len(compared["runs"]["small"]) == 2
        assert compared["small"]["hit_rate"] > 0.5 and compared["ratio"] > 0
    assert 0 < figures["a_memory"]["anon"] < figures["a_memory"]["rss"]
    assert "DNS qps, own names" in done.stdout and "full-set index" in done.stdout
    assert figures["during_catch_up_qps"] and figures["fullset_after_restart_seconds"] > 0
    assert "catch-up of an empty peer" in done.stdout
    # The in-process companion over the store A served: every shape measured.
    inprocess = subprocess.run([sys.executable, str(TOOLS / "bench_respond"), "--store",
                                str(workdir / "a" / "data"), "--names",
                                str(workdir / "import-000.jsonl"), "--queries", "2000",
                                "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert inprocess.returncode == 0, inprocess.stderr[-2000:]
    assert inprocess.stdout.startswith("1,500 names: uniform ")
    for shape in ("zipf", "hit", "lean"):
        assert f" {shape} " in inprocess.stdout


def test_bench_publish_answers_every_post_201(tmp_path):
    done = subprocess.run([sys.executable, str(TOOLS / "bench_publish"), "--records", "300",
                           "--clients", "1,4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if "records/s" in line]
    assert len(lines) == 2 and all("{201: 300}" in line for line in lines)
