"""A bounded HTTP write stream to a dmfdns node, run as its own process by the benchmark:

    python writer.py PORT ZONE RATE SECONDS

POSTs one new TXT value per write (a fresh name each, ``bench-w<n>.<zone>``) at RATE writes
per second for SECONDS, from ``CONNECTIONS`` keep-alive connections (a write is answered
only once durable, so one connection alone could fall behind the rate), and prints a JSON
line: writes sent, accepted (2xx), failed, and the achieved rate.
"""

import http.client
import itertools
import json
import sys
import threading
import time

CONNECTIONS = 4


class Stream:
    def __init__(self, port: int, zone: str, rate: float, seconds: float):
        self.port, self.zone, self.rate, self.seconds = port, zone, rate, seconds
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()
        self.sent = self.accepted = self.failed = 0
        self.start = time.monotonic()

    def next_write(self) -> int | None:
        """The next write's number once it is due, None when the time is up."""
        with self.lock:
            number = next(self.numbers)
        due = self.start + (number - 1) / self.rate
        if due >= self.start + self.seconds:
            return None
        time.sleep(max(0.0, due - time.monotonic()))
        return number

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while (number := self.next_write()) is not None:
            body = json.dumps({"value": f"bench-{number}", "ttl": 300})
            try:
                connection.request("POST", f"/v1/records/bench-w{number}.{self.zone}",
                                   body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = 200 <= response.status < 300
            except OSError:
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            with self.lock:
                self.sent += 1
                self.accepted += ok
                self.failed += not ok


def main(port: int, zone: str, rate: float, seconds: float) -> dict:
    stream = Stream(port, zone, rate, seconds)
    threads = [threading.Thread(target=stream.run) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - stream.start
    return {"sent": stream.sent, "accepted": stream.accepted, "failed": stream.failed,
            "rate": round(stream.sent / elapsed, 1)}


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    print(json.dumps(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]),
                          float(sys.argv[4]))))
