"""Concurrent HTTP publishers: ``clients`` processes, each one keep-alive connection that
POSTs its share of the records one after another (as a user's client does) and counts the
answers. All start together; the rate is records answered 201 over the wall time."""

import http.client
import json
import multiprocessing
import time
from urllib.parse import quote

TIMEOUT = 30.0


def _publish(port: int, records: list, ttl: int, start, results) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    statuses: dict[int, int] = {}
    start.wait()
    for name, value in records:
        body = json.dumps({"value": value, "ttl": ttl})
        try:
            connection.request("POST", f"/v1/records/{quote(name)}", body=body,
                               headers={"Content-Type": "application/json"})
            reply = connection.getresponse()
            reply.read()
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
        except (OSError, http.client.HTTPException):
            statuses[0] = statuses.get(0, 0) + 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    connection.close()
    results.put(statuses)


def publish(port: int, records: list, clients: int, *, ttl: int = 3600) -> dict:
    """``{"seconds", "statuses": {status: count}, "rate"}`` for POSTing ``records``."""
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    shares = [records[i::clients] for i in range(clients)]
    workers = [context.Process(target=_publish, args=(port, share, ttl, start, results))
               for share in shares]
    for worker in workers:
        worker.start()
    time.sleep(0.5)                       # every client connected and waiting
    began = time.monotonic()
    start.set()
    statuses: dict[int, int] = {}
    for _ in workers:
        for status, count in results.get(timeout=600).items():
            statuses[status] = statuses.get(status, 0) + count
    seconds = time.monotonic() - began
    for worker in workers:
        worker.join(timeout=10)
    return {"seconds": seconds, "statuses": statuses,
            "rate": statuses.get(201, 0) / seconds if seconds else 0.0}
