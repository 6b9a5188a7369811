"""Summarise collapsed stacks (``frame;frame;frame COUNT`` per line, the format of
``py-spy record -f raw`` and of flamegraph.pl's input): the share of samples in which each
function appears (inclusive) and is the leaf (own).

Used for the live profile in docs/performance.md:

    py-spy record -p PID -d 10 -r 300 -f raw -o stacks.txt --nonblocking
    python3 tools/dnsbench/stacks.py stacks.txt --top 30
"""

import argparse
from collections import Counter


def summarise(lines):
    """``(total samples, inclusive Counter, own Counter)`` keyed by function name (the
    frame without its file and line)."""
    total, inclusive, own = 0, Counter(), Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        functions = [frame.split(" (", 1)[0] for frame in stack.split(";")]
        own[functions[-1]] += samples
        for function in set(functions):
            inclusive[function] += samples
    return total, inclusive, own


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="collapsed stacks, one 'frames COUNT' per line")
    parser.add_argument("--top", type=int, default=30, help="rows to print (default 30)")
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8", errors="replace") as stacks:
        total, inclusive, own = summarise(stacks)
    print(f"{total} samples")
    print("| inclusive % | own % | function |\n|---|---|---|")
    for function, samples in inclusive.most_common(args.top):
        print(f"| {100 * samples / total:.1f} | {100 * own[function] / total:.1f} "
              f"| `{function}` |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
