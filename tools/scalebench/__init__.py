"""Write, sync and scale benchmarks of issue 16 (tools/bench_publish, tools/bench_million)."""
