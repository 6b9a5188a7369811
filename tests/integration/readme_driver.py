"""Runs a shell command that should start a dmfdns node on the default configuration, waits
for the node to answer ``mesh.test SOA`` on 127.0.0.1:5353, stops it with SIGINT (Ctrl-C)
and prints one JSON line: the answer, the exit status and the command's output.

Used by test_readme_install.py.

usage: readme_driver.py WORKDIR TIMEOUT COMMAND
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from dnslib import QTYPE, DNSRecord


def ask_soa() -> str | None:
    query = DNSRecord.question("mesh.test", "SOA")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(query.pack(), ("127.0.0.1", 5353))
            reply = DNSRecord.parse(sock.recvfrom(4096)[0])
        except OSError:
            return None
    answers = [str(rr) for rr in reply.rr if rr.rtype == QTYPE.SOA]
    return answers[0] if answers else None


def main() -> None:
    workdir, timeout, command = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    with open(os.path.join(workdir, "command.log"), "wb") as output:
        process = subprocess.Popen(["bash", "-c", command], cwd=workdir, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        answer, deadline = None, time.monotonic() + timeout
        while answer is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            answer = ask_soa()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    with open(os.path.join(workdir, "command.log"), encoding="utf-8", errors="replace") as f:
        log = f.read()
    print(json.dumps({"answer": answer, "status": process.returncode, "log": log[-6000:]}))


if __name__ == "__main__":
    main()
