"""``node/public/``: the public multi-tenant example loads as documented, runs as a real
``dmfdns serve`` subprocess, and ``check-config`` warns about its rehearsal secrets off
loopback."""

import os
import subprocess
import sys
import time

from dmfdns.config import ListenAddress, load_config
from node_support import free_port, http_call
from public_node import CONFIG, PUBLIC, operator_token, public_copy
from test_cli_serve import cli


def test_the_public_example_is_a_multi_tenant_node_with_registration_and_update(tmp_path):
    config = load_config(CONFIG, cwd=tmp_path)
    assert config.dns.listen == (ListenAddress("127.0.0.1", 5353),)
    assert config.http.listen == (ListenAddress("127.0.0.1", 8053),)
    assert config.node.data_dir == tmp_path / "dmfdns-public-data"
    assert [z.file.name for z in config.zones] == ["mesh.test.zone"]
    assert config.http.auth_mode == "multi-tenant"
    assert config.http.operator_token_file == PUBLIC / "operator.token"
    registration = config.registration
    assert registration.enabled and registration.node_hostname == "dmp.mesh.test"
    # A rehearsal registers a dozen users (two requests each) within a minute.
    assert registration.request_burst + registration.requests_per_hour / 60 >= 24
    assert config.update.enabled and config.update.claims


def test_check_config_passes_on_loopback_and_warns_about_rehearsal_secrets_off_it(tmp_path):
    status, out, err = cli("check-config", str(CONFIG))
    assert status == 0 and "OK" in out and "warning" not in err
    public = public_copy(tmp_path, dns_port=53, http_port=8053, host="192.0.2.10")
    status, out, err = cli("check-config", str(public))
    assert status == 0, err
    assert "warning" in err and "rehearsal" in err and "192.0.2.10:8053" in err


def test_the_public_example_serves_as_a_real_process(tmp_path):
    dns_port, http_port = free_port(), free_port()
    config = public_copy(tmp_path, dns_port=dns_port, http_port=http_port)
    process = subprocess.Popen([sys.executable, "-m", "dmfdns", "serve", "--config",
                                str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=tmp_path, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _ = http_call(http_port, "GET", "/readyz")[:2]
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, \
                process.stderr.read1().decode() if process.poll() is not None else "timeout"
            time.sleep(0.1)
        # Multi-tenant: no token, no write; the rehearsal operator token writes.
        assert http_call(http_port, "POST", "/v1/records/a.mesh.test",
                         {"value": "hello"})[0] == 401
        status = http_call(http_port, "POST", "/v1/records/a.mesh.test", {"value": "hello"},
                           {"Authorization": f"Bearer {operator_token()}"})[0]
        assert status == 201
    finally:
        process.terminate()
        process.wait(timeout=20)
