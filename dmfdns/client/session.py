"""One command's use of the user directory: the passphrase, the lock, load and save.

The passphrase comes from ``$DMFDNS_PASSPHRASE``, else the file named by
``$DMFDNS_PASSPHRASE_FILE`` (surrounding whitespace stripped, as the reference does), else a
prompt when standard input is a terminal (docs/decisions.md §7). The environment is read by
``dmfdns.config`` and handed in. A session holds the directory's lock from ``open`` to
``close``; ``save`` writes the state and the settings back.
"""

import getpass
import sys

from .state import StateError, UserDir, state_key


class PassphraseError(StateError):
    pass


def read_passphrase(env, prompt=None, *, confirm: bool = False) -> str:
    if env.passphrase:
        return env.passphrase
    if env.passphrase_file is not None:
        try:
            text = env.passphrase_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise PassphraseError(f"cannot read passphrase file {env.passphrase_file}: "
                                  f"{getattr(exc, 'strerror', exc)}") from None
        if not text:
            raise PassphraseError(f"passphrase file {env.passphrase_file} is empty")
        return text
    if prompt is None:
        if not sys.stdin.isatty():
            raise PassphraseError("no passphrase: set DMFDNS_PASSPHRASE or "
                                  "DMFDNS_PASSPHRASE_FILE, or run in a terminal")
        prompt = getpass.getpass
    text = prompt("passphrase: ")
    if confirm and prompt("passphrase again: ") != text:
        raise PassphraseError("the passphrases differ")
    if not text:
        raise PassphraseError("the passphrase is empty")
    return text


class Session:
    """The unlocked user: ``profile``, ``state`` (secrets) and ``key``; call ``save``."""

    def __init__(self, home, passphrase: str):
        self.dir = UserDir(home)
        self._lock = None
        self.dir.load_profile()          # a clear error when there is no identity yet
        self._lock = self.dir.lock()
        self._lock.__enter__()
        try:
            self.profile = self.dir.load_profile()   # again: another command may have saved
            self.key = state_key(passphrase, self.profile.state_salt)
            self.state = self.dir.load_state(self.key)
        except BaseException:
            self.close()
            raise

    def save(self) -> None:
        self.dir.save_state(self.state, self.key)
        self.dir.save_profile(self.profile)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
