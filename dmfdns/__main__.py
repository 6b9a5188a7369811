"""Entry point of the ``dmfdns`` command: the only place that reads the wall clock and
imports the global reactor; everything below gets ``now`` and the reactor passed in."""

import sys
import time

from .cli import run


def _global_reactor():
    from twisted.internet import reactor
    return reactor


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return run(args, now=time.time(), get_reactor=_global_reactor)


if __name__ == "__main__":
    sys.exit(main())
