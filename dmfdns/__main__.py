"""Entry point of the ``dmfdns`` command: the only place that reads the wall clock and
imports the global reactor; everything below gets ``now`` and the reactor passed in.

The command's modules are imported inside ``main``, where Ctrl-C is caught: on a loaded
machine the imports take most of a second, and an interrupt there must end the command
quietly (exit 130, the shell's code for SIGINT), not with a traceback.
"""

import sys
import time

INTERRUPTED = 130


def _global_reactor():
    from twisted.internet import reactor
    return reactor


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        from .cli import run
        return run(args, now=time.time(), get_reactor=_global_reactor)
    except KeyboardInterrupt:
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
