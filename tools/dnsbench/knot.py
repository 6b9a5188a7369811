"""Knot DNS as the benchmark's reference server: one UDP worker on one pinned CPU (or
``udp_workers`` of them, unpinned, for the two-process shape).

The configuration (docs/performance.md, Method): one UDP, one TCP and one background worker, the
whole zone loaded from the file, no journal, no semantic checks, no zone-file flush. Knot
has no response rate limit unless ``mod-rrl`` is loaded, and we load no module: without
``mod-cookies`` it ignores a COOKIE option (with it, dnsperf's fixed client cookie would
get BADCOOKIE, which no real resolver keeps receiving), so on the cookie shape Knot does
less work than dmfdns, which computes a server cookie for every answer. knotd
pins its UDP workers itself after start, so the caller re-pins every thread
(``Proc.pin_all_threads``) once Knot answers.
"""

import os

CONFIG = """\
server:
    rundir: "{workdir}"
    pidfile: "{workdir}/knot.pid"
    listen: 127.0.0.1@{port}
    udp-workers: {udp_workers}
    tcp-workers: 1
    background-workers: 1

log:
  - target: stderr
    any: warning

database:
    storage: "{workdir}/db"

template:
  - id: default
    storage: "{workdir}"
    semantic-checks: off
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none

zone:
  - domain: {zone}.
    file: "{zone_file}"
"""
# tools/bench_dnssec_knot: the zone signed online (mod-onlinesign, Ed25519, one key made at
# start), denials as NSEC "black lies" like dmfdns's compact denial.
ONLINESIGN = """
policy:
  - id: ed25519
    algorithm: ed25519
    single-type-signing: on

mod-onlinesign:
  - id: signed
    policy: ed25519
"""
ONLINESIGN_ZONE = """    module: mod-onlinesign/signed
"""


def write_config(workdir, *, port: int, zone: str, zone_file, udp_workers: int = 1,
                 onlinesign: bool = False) -> str:
    os.makedirs(os.path.join(workdir, "db"), exist_ok=True)
    path = os.path.join(workdir, "knot.conf")
    text = CONFIG.format(workdir=workdir, port=port, zone=zone, udp_workers=udp_workers,
                         zone_file=os.path.abspath(zone_file))
    if onlinesign:
        head, zones = text.split("\nzone:\n")
        text = head + ONLINESIGN + "\nzone:\n" + zones + ONLINESIGN_ZONE
    with open(path, "w", encoding="ascii") as out:
        out.write(text)
    return path


def argv(config_path) -> list:
    return ["knotd", "-c", config_path]
