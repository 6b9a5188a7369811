"""Where the passphrase comes from, and a session's lock and save."""

import pytest

from dmfdns.client import session as client_session
from dmfdns.client import state as st
from dmfdns.config import ClientEnvironment

from client_fakes import make_user


def test_the_environment_wins_then_the_file_then_the_prompt(tmp_path, monkeypatch):
    secret = tmp_path / "pass"
    secret.write_text("  from the file \n")
    assert client_session.read_passphrase(ClientEnvironment(tmp_path, "from env", secret)) \
        == "from env"
    assert client_session.read_passphrase(ClientEnvironment(tmp_path, None, secret)) \
        == "from the file"
    asked = []
    prompt = lambda text: asked.append(text) or "typed"  # noqa: E731
    assert client_session.read_passphrase(ClientEnvironment(tmp_path), prompt) == "typed"
    assert asked == ["passphrase: "]


def test_passphrase_problems_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(client_session.PassphraseError, match="cannot read passphrase file"):
        client_session.read_passphrase(ClientEnvironment(tmp_path, None, tmp_path / "none"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(client_session.PassphraseError, match="is empty"):
        client_session.read_passphrase(ClientEnvironment(tmp_path, None, tmp_path / "empty"))
    answers = iter(["one", "two"])
    with pytest.raises(client_session.PassphraseError, match="differ"):
        client_session.read_passphrase(ClientEnvironment(tmp_path), lambda _: next(answers),
                                       confirm=True)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(client_session.PassphraseError, match="DMFDNS_PASSPHRASE"):
        client_session.read_passphrase(ClientEnvironment(tmp_path))


def test_a_session_saves_what_changed_and_holds_the_lock(tmp_path):
    import fcntl
    profile, secrets = make_user("alice")
    home = st.UserDir(tmp_path)
    profile.state_salt = bytes(range(32))
    home.create(profile, secrets, st.state_key("pw", profile.state_salt))
    with client_session.Session(tmp_path, "pw") as session:
        session.state.blocked_keys.append(b"\x01" * 32)
        session.profile.message_ttl = 600
        with open(tmp_path / st.LOCK_FILE) as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        session.save()
    with client_session.Session(tmp_path, "pw") as again:
        assert again.state.blocked_keys == [b"\x01" * 32]
        assert again.profile.message_ttl == 600
    with pytest.raises(st.WrongPassphrase):
        client_session.Session(tmp_path, "not it")
    with open(tmp_path / st.LOCK_FILE) as other:       # a failed open released the lock
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
