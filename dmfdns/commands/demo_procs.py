"""The ``dmfdns demo`` node processes: started with signals held, waited for until each
serves the demo's manifest, and always stopped.

A node is any object with ``name``, ``home`` (its directory, holding ``node.log``),
``http_port``, ``http_url``, ``dns_endpoint`` and ``process`` (set here).
"""

import contextlib
import ctypes
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1


class DemoFailed(Exception):
    """The demo cannot go on; the message is one line for the user."""


def say(out, text: str) -> None:
    print(text, file=out)
    out.flush()


def start_nodes(planned, write_config, out, nodes: list) -> None:
    """Start the nodes (``write_config(node)`` gives the path of each one's TOML), adding
    each to ``nodes`` as soon as it exists (so a signal at any point leaves every started
    process in the list the cleanup walks)."""
    for node in planned:
        config = write_config(node)
        with open(node.home / "node.log", "wb") as log, _signals_held():
            node.process = subprocess.Popen(
                [sys.executable, "-m", "dmfdns", "serve", "--config", str(config)],
                cwd=node.home, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_child_setup)
            nodes.append(node)
        say(out, f"   {node.name}: DNS {node.dns_endpoint}, HTTP 127.0.0.1:{node.http_port}, "
                 f"pid {node.process.pid}")


@contextlib.contextmanager
def _signals_held():
    """SIGTERM/SIGINT wait until a started process is on the list (then they act)."""
    held = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _child_setup() -> None:
    """In the node process: take signals again, and ask Linux for SIGTERM when the demo
    process dies (best effort; other systems rely on the demo's own cleanup)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_ready(nodes, sync_token: str, seq: int) -> None:
    """Every node healthy and serving manifest ``seq``, within START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    for node in nodes:
        while True:
            if node.process.poll() is not None:
                raise DemoFailed(f"{node.name} exited with status {node.process.returncode}"
                                 f": {last_log_line(node)}")
            healthy = _healthy(node.http_port)
            if healthy and _manifest_seq(node, sync_token) == seq:
                break
            if time.monotonic() > deadline:
                what = ("did not serve the cluster manifest" if healthy
                        else "did not become healthy")
                raise DemoFailed(f"{node.name} {what} within {START_TIMEOUT:g} s: "
                                 f"{last_log_line(node)}")
            time.sleep(0.1)


def last_log_line(node) -> str:
    try:
        lines = (node.home / "node.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
            return reply.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _manifest_seq(node, token: str) -> int | None:
    """The seq of the manifest the node has adopted (its sync endpoint), or None."""
    request = urllib.request.Request(f"{node.http_url}/v1/sync/cluster-manifest",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=1) as reply:
            body = json.loads(reply.read()) if reply.status == 200 else {}
    except (OSError, urllib.error.URLError, ValueError):
        return None
    seq = body.get("seq") if isinstance(body, dict) else None
    return seq if isinstance(seq, int) else None


def stop_nodes(nodes) -> None:
    for node in nodes:
        if node.process.poll() is None:
            node.process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for node in nodes:
        try:
            node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
