"""CLI subcommand groups (layer 3).

Each module here exposes ``register(subparsers)``; its handlers take ``(args, ctx)`` and
return an exit status, raising ``CommandError`` for a one-line failure.
"""

import sys
from dataclasses import dataclass, field
from typing import Callable, TextIO


class CommandError(Exception):
    """A one-line failure reported to the user with exit status ``status``."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


@dataclass
class Context:
    """What a command may use from the outside world, passed in by ``__main__``."""

    now: float
    get_reactor: Callable = None
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
