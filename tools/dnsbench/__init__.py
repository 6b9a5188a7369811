"""Helpers of ``tools/bench_dns``: dmfdns against Knot under dnsperf on loopback.

One module per job: ``zonegen`` makes the data and the query file, ``procs`` starts, pins,
measures and stops server processes, ``servers`` knows how to run Knot and dmfdns,
``dnsperf`` runs and parses the load generator, ``verify`` checks that both servers give
the same answers, ``report`` prints the table. The method is docs/performance.md.
"""
