"""CLI subcommand groups (layer 3).

Each module here exposes ``register(subparsers)``; its handlers take ``(args, ctx)`` and
return an exit status, raising ``CommandError`` for a one-line failure.
"""

import pathlib
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


def read_utf8(path, what: str = "") -> str:
    """The text of file ``path``; CommandError naming it (``what``: e.g. ``"zone file"``)."""
    path = pathlib.Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {what + ' ' if what else ''}{path}: "
                           f"{exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not UTF-8 text") from None
