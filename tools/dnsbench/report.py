"""Medians over the rounds, printed as a Markdown table (pasted as is into
docs/performance.md) and the final ratio line."""

import statistics


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def summarize(runs: list, labels) -> dict:
    """Per server: medians over its throughput runs (``kind == "throughput"``) and over
    its latency runs (``kind == "latency"``)."""
    summary = {}
    for label in labels:
        tput = [r for r in runs if r["server"] == label and r["kind"] == "throughput"]
        lat = [r for r in runs if r["server"] == label and r["kind"] == "latency"]
        if not tput:
            continue
        qps = [r["qps"] for r in tput]
        summary[label] = {
            "rounds": len(tput),
            "qps_median": _median(qps), "qps_min": min(qps), "qps_max": max(qps),
            "avg_ms": _median(r["avg_ms"] for r in tput),
            "lat_avg_ms": _median(r["avg_ms"] for r in lat),
            "lat_p50_ms": _median(r["p50_ms"] for r in lat),
            "lat_p99_ms": _median(r["p99_ms"] for r in lat),
            "lat_max_ms": max((r["max_ms"] for r in lat if r["max_ms"] is not None),
                              default=None),
            "lost": sum(r["lost"] for r in tput + lat),
            "sent": sum(r["sent"] for r in tput + lat),
            "answered_share_min": min(r["answered_share"] for r in tput + lat),
            "expected_rcode_share_min": min(r["expected_rcode_share"] for r in tput + lat),
            "server_cpu_pct": _median(r["server_cpu_pct"] for r in tput),
            "qps_per_cpu": _median(r["qps_per_cpu"] for r in tput),
            "client_cpu_pct": _median(r["client_cpu_pct"] for r in tput),
            "other_cpu_pct": _median(r["other_cpu_pct"] for r in tput),
            "rss_mib": max(r["rss_mib"] for r in tput),
        }
    return summary


def ratio(summary: dict, key="qps_median", numerator="dmfdns", denominator="knot"):
    try:
        return summary[numerator][key] / summary[denominator][key]
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def _num(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def table(summary: dict, latency_qps) -> str:
    lat_head = f"avg / p50 / p99 / max ms @ {latency_qps:,} q/s" if latency_qps else \
        "latency run"
    rows = [
        f"| server | qps median (min–max), uncapped | avg ms uncapped | {lat_head} "
        "| server CPU % | qps per server CPU-s | dnsperf CPU % | other CPU % | lost / sent | expected rcodes | RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s in summary.items():
        latency = " / ".join(_num(s[k], 2) for k in
                             ("lat_avg_ms", "lat_p50_ms", "lat_p99_ms", "lat_max_ms"))
        rows.append(
            f"| {label} | {_num(s['qps_median'])} ({_num(s['qps_min'])}–{_num(s['qps_max'])})"
            f" | {_num(s['avg_ms'], 2)} | {latency if latency_qps else 'not run'}"
            f" | {_num(s['server_cpu_pct'])} | {_num(s['qps_per_cpu'])}"
            f" | {_num(s['client_cpu_pct'])}"
            f" | {_num(s['other_cpu_pct'])}"
            f" | {s['lost']:,} / {s['sent']:,} | ≥ {100 * s['expected_rcode_share_min']:.1f} %"
            f" | {_num(s['rss_mib'])} |")
    return "\n".join(rows)


BUSY_PCT = 85.0     # a process at or above this share of one CPU is what bounds a run


def bound(summary: dict, processes: int) -> str:
    """What limited a server's runs: its own CPU, dnsperf's, or the box (shared CPUs)."""
    server, client = summary["server_cpu_pct"] or 0, summary["client_cpu_pct"] or 0
    others = summary["other_cpu_pct"] or 0
    if others >= 50:
        return (f"the shared box: other tenants used {others:.0f} % of a CPU "
                f"(server {server:.0f} %, dnsperf {client:.0f} %)")
    if processes > 1:
        if server + client + (summary["other_cpu_pct"] or 0) >= 100 * processes * 0.9:
            return (f"both CPUs busy (server {server:.0f} %, dnsperf {client:.0f} %, "
                    f"others {summary['other_cpu_pct']:.0f} %)")
    elif server >= BUSY_PCT:
        return f"server CPU ({server:.0f} %)"
    elif client >= BUSY_PCT:
        return f"dnsperf CPU ({client:.0f} %)"
    return (f"neither saturated (server {server:.0f} %, dnsperf {client:.0f} %, others "
            f"{summary['other_cpu_pct']:.0f} %)")


def by_shape(runs: list, labels, shapes) -> list:
    """Per shape: each server's medians, the dmfdns/Knot ratios, the target and bounds."""
    rows = []
    for shape in shapes:
        mine = [r for r in runs if r.get("shape") == shape.name]
        summary = summarize(mine, labels)
        writes = [r["writes"] for r in mine if r.get("writes")]
        rows.append({
            "shape": shape.name, "title": shape.title, "target": shape.target,
            "servers": summary, "ratio": ratio(summary),
            "cpu_ratio": ratio(summary, "qps_per_cpu"),
            "bounds": {label: bound(s, shape.processes) for label, s in summary.items()},
            "writes_accepted": sum(w.get("accepted", 0) for w in writes),
            "writes_sent": sum(w.get("sent", 0) for w in writes)})
    return rows


def shape_table(rows: list) -> str:
    lines = [
        "| shape | Knot qps median (min–max) | dmfdns qps median (min–max) | ratio (target) "
        "| ratio per server CPU-s | answered / expected rcode (dmfdns) | Knot bounded by "
        "| dmfdns bounded by |",
        "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        knot, mine = row["servers"].get("knot"), row["servers"].get("dmfdns")

        def qps(s):
            return (f"{_num(s['qps_median'])} ({_num(s['qps_min'])}–{_num(s['qps_max'])})"
                    if s else "–")
        target = f" (≥ {row['target']:.2f})" if row["target"] else ""
        result = f"{row['ratio']:.2f}{target}" if row["ratio"] is not None else "–"
        cpu = f"{row['cpu_ratio']:.2f}" if row["cpu_ratio"] is not None else "–"
        shares = (f"{100 * mine['answered_share_min']:.1f} % / "
                  f"{100 * mine['expected_rcode_share_min']:.1f} %" if mine else "–")
        title = row["title"]
        if row["writes_sent"]:
            title += f" ({row['writes_accepted']:,} of {row['writes_sent']:,} writes accepted)"
        lines.append(f"| {row['shape']}: {title} | {qps(knot)} | {qps(mine)} | {result} "
                     f"| {cpu} | {shares} | {row['bounds'].get('knot', '–')} "
                     f"| {row['bounds'].get('dmfdns', '–')} |")
    return "\n".join(lines)
