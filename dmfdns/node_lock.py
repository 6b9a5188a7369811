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
import pwd

LOCK_FILE = "node.lock"
STORE_FILES = ("data.mdb", "lock.mdb", LOCK_FILE)


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
        check_data_dir(self.path.parent)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise NodeError(f"data_dir {self.path.parent}: {exc.strerror}") from None
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


def check_data_dir(path) -> None:
    """NodeError, one line, unless this user can use ``path`` as a data directory: it is a
    directory (or can be made) this user can write, with store files this user can write;
    and this is not root working in a directory that belongs to another user (a service's),
    where every file root creates would lock the service out."""
    path = pathlib.Path(path)
    user = _user(os.geteuid())
    if path.exists() and not path.is_dir():
        raise NodeError(f"data_dir {path} is not a directory")
    if not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise NodeError(f"data_dir {path} does not exist and {parent} is not writable "
                            f"by {user}: create it for the user the node runs as")
        return
    owner = _user(path.stat().st_uid)
    if os.geteuid() == 0 and path.stat().st_uid != 0:
        raise NodeError(f"data_dir {path} belongs to {owner}: run dmfdns as that user "
                        f"(e.g. sudo -u {owner} dmfdns ...), so that no file in it ends up "
                        "owned by root")
    if not os.access(path, os.W_OK | os.X_OK):
        raise NodeError(f"data_dir {path} is not writable by {user} (owner {owner})")
    for name in STORE_FILES:
        file = path / name
        if file.exists() and not os.access(file, os.R_OK | os.W_OK):
            raise NodeError(f"{file} is not writable by {user} (owner "
                            f"{_user(file.stat().st_uid)}): chown -R {user} {path}")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
