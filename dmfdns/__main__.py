"""Entry point of the ``dmfdns`` command: the only place that reads the wall clock and
imports the global reactor; everything below gets ``now`` and the reactor passed in.

The command's modules are imported inside ``main`` with SIGINT held: on a loaded machine
the imports take most of a second, and a KeyboardInterrupt raised inside a third-party
import can be swallowed there (the process then serves on, deaf to the Ctrl-C it got). So
a Ctrl-C during the imports is only noted, and the command then exits 130 (the shell's code
for SIGINT) without a traceback; afterwards Ctrl-C raises as usual, and ``cli.run`` (or,
once serving, the reactor) handles it.
"""

import signal
import sys
import time

INTERRUPTED = 130


def _global_reactor():
    from twisted.internet import reactor
    return reactor


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        from .cli import run
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        return INTERRUPTED
    try:
        return run(args, now=time.time(), get_reactor=_global_reactor)
    except KeyboardInterrupt:
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
