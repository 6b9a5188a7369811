"""The single-writer lock of a data directory, and the errors a node's start reports.

The node is the single writer of its LMDB environment (docs/storage.md): it holds an
exclusive ``flock`` on ``<data_dir>/node.lock`` from ``make_service`` until it stops, and
``dmfdns records put|delete|import`` take the same lock, so they refuse to write while a
node holds it.
"""

import errno
import fcntl
import os
import pathlib

LOCK_FILE = "node.lock"


class NodeError(Exception):
    """The node cannot start; the message is one line for the operator."""


class NodeLocked(NodeError):
    """Another process (a running node) holds the data directory's lock."""


class NodeLock:
    """An exclusive, non-blocking ``flock`` on ``<data_dir>/node.lock``.

    ``flock`` locks belong to the open file, so they are released when the holder exits
    however it exits, and two holders in one process conflict like two processes do.
    """

    def __init__(self, data_dir):
        self.path = pathlib.Path(data_dir) / LOCK_FILE
        self._fd = None

    def acquire(self, purpose: str = "") -> "NodeLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise NodeLocked(f"{self.path.parent} is in use by a running dmfdns node "
                                 f"(it holds {self.path}{_holder(self.path)})") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {purpose}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)     # closing the file drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _holder(path: pathlib.Path) -> str:
    try:
        words = path.read_text().split()
    except OSError:
        return ""
    return f", pid {words[0]}" if words and words[0].isdigit() else ""
