"""Helpers of ``tools/bench_dns``: dmfdns against Knot under dnsperf on loopback.

One module per job: ``zonegen`` makes the data and the query file; ``knot`` and
``dmfdns_node`` configure and start the two servers; ``procs`` starts, pins, measures and
stops processes; ``dnsperf`` runs and parses the load generator; ``verify`` checks that
both servers give the answers loaded; ``run`` strings the steps together; ``report``
prints the table; ``inprocess`` profiles dmfdns's query path without sockets; ``stacks``
summarises a py-spy profile. The method is docs/performance.md.
"""
