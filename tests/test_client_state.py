"""The user directory: sealed secrets, atomic files, permissions, the lock."""

import fcntl
import json
import stat

import pytest

from dmfdns.client import state as st
from dmfdns.config import client_environment

from client_fakes import make_user


@pytest.fixture(scope="module")
def key():
    return st.state_key("correct horse", bytes(range(32)))


def _filled():
    profile, secrets = make_user("alice", nodes=[st.NodeEndpoint("http://127.0.0.1:1",
                                                                 "127.0.0.1:2", "n1")])
    secrets.contacts.append(st.Contact("bob", "mesh.test", b"\x01" * 32, b"\x02" * 32, (1, 2)))
    secrets.replay.append(st.ReplayEntry(b"\x03" * 32, b"\x04" * 16, 99))
    secrets.prekeys.append(st.PrekeySecret(7, b"\x05" * 32, b"\x06" * 32, 100, "v=dmp1;..."))
    secrets.intro.append(st.IntroMessage(b"\x07" * 32, None, None, b"\x08" * 16, 5, "z",
                                         b"hello intro"))
    secrets.partials["k"] = {"count": 2, "parts": {"0": "aa"}, "ts": 1, "exp": 2}
    return profile, secrets


def test_a_round_trip_keeps_everything(tmp_path, key):
    profile, secrets = _filled()
    home = st.UserDir(tmp_path / "home")
    home.create(profile, secrets, key)
    assert home.load_profile() == profile
    assert home.load_state(key) == secrets


def test_secrets_are_not_readable_without_the_passphrase(tmp_path, key):
    profile, secrets = _filled()
    home = st.UserDir(tmp_path / "home")
    home.create(profile, secrets, key)
    blob = (tmp_path / "home" / st.STATE_FILE).read_bytes()
    for secret in (secrets.x25519_private.hex().encode(), secrets.x25519_private,
                   b"hello intro", b"bob", b"\x05" * 32):
        assert secret not in blob
    with pytest.raises(st.WrongPassphrase):
        home.load_state(st.state_key("wrong horse", bytes(range(32))))


def test_every_save_uses_a_fresh_nonce(tmp_path, key):
    profile, secrets = _filled()
    home = st.UserDir(tmp_path / "home")
    home.create(profile, secrets, key)
    first = (tmp_path / "home" / st.STATE_FILE).read_bytes()
    home.save_state(secrets, key)
    second = (tmp_path / "home" / st.STATE_FILE).read_bytes()
    assert first[:17] != second[:17] and home.load_state(key) == secrets


def test_files_are_private_and_writes_leave_no_temporaries(tmp_path, key):
    profile, secrets = _filled()
    home = st.UserDir(tmp_path / "home")
    home.create(profile, secrets, key)
    home.save_profile(profile)
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
    for name in (st.PROFILE_FILE, st.STATE_FILE):
        assert stat.S_IMODE((tmp_path / "home" / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == [st.PROFILE_FILE,
                                                                      st.STATE_FILE]


def test_create_refuses_to_overwrite(tmp_path, key):
    profile, secrets = _filled()
    home = st.UserDir(tmp_path)
    home.create(profile, secrets, key)
    with pytest.raises(st.StateError, match="already holds"):
        home.create(profile, secrets, key)


def test_a_missing_or_damaged_directory_is_one_clear_error(tmp_path, key):
    with pytest.raises(st.StateError, match="identity init"):
        st.UserDir(tmp_path / "nobody").load_profile()
    profile, secrets = _filled()
    home = st.UserDir(tmp_path / "home")
    home.create(profile, secrets, key)
    data = json.loads((tmp_path / "home" / st.PROFILE_FILE).read_text())
    data["surprise"] = 1
    (tmp_path / "home" / st.PROFILE_FILE).write_text(json.dumps(data))
    with pytest.raises(st.StateError, match="surprise"):
        home.load_profile()
    (tmp_path / "home" / st.STATE_FILE).write_bytes(b"garbage")
    with pytest.raises(st.StateError, match="not a dmfdns state"):
        home.load_state(key)


def test_the_lock_is_exclusive(tmp_path, key):
    profile, secrets = _filled()
    home = st.UserDir(tmp_path)
    home.create(profile, secrets, key)
    with home.lock():
        with open(tmp_path / st.LOCK_FILE) as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / st.LOCK_FILE) as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_the_state_key_is_not_the_identity_key():
    from dmfdns.proto.keys import passphrase_to_x25519
    salt = bytes(range(32))
    assert st.state_key("pass", salt) == passphrase_to_x25519("pass", salt)  # same KDF...
    assert st.state_key("pass", bytes(32)) != passphrase_to_x25519("pass", salt)  # ...own salt


def test_client_environment_defaults_and_overrides(tmp_path):
    env = client_environment({"HOME": str(tmp_path)})
    assert env.home == tmp_path / ".config" / "dmfdns" and env.passphrase is None
    env = client_environment({"XDG_CONFIG_HOME": str(tmp_path / "x")})
    assert env.home == tmp_path / "x" / "dmfdns"
    env = client_environment({"DMFDNS_HOME": str(tmp_path / "h"), "DMFDNS_PASSPHRASE": "s3cr3t",
                              "DMFDNS_PASSPHRASE_FILE": str(tmp_path / "f")})
    assert (env.home, env.passphrase, env.passphrase_file) == (tmp_path / "h", "s3cr3t",
                                                               tmp_path / "f")
    assert "s3cr3t" not in repr(env)
