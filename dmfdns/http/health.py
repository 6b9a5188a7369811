"""Health endpoints: ``/health`` (the reference's), ``/healthz`` (liveness), ``/readyz``.

* ``/health`` answers 200 ``{"status": "ok"}`` when the store answers a cheap read, else 503
  ``{"status": "degraded", "store": "<error>"}``, as the reference node does.
* ``/healthz`` is liveness: answering at all proves the reactor is turning.
* ``/readyz`` is readiness in the CoreDNS ``ready`` style (docs/decisions.md §8.5): 200
  ``{"status": "ready"}`` when every registered condition holds (the store is open, the
  listeners are bound, ...), else 503 with the unmet ones listed.
"""

from typing import Callable

from .endpoint import Boundary, Call, Endpoint, Reply


class Readiness:
    """Named conditions that must all hold before the node takes traffic."""

    def __init__(self):
        self._checks: dict[str, Callable[[], bool]] = {}
        self._flags: dict[str, bool] = {}

    def require(self, name: str, check: Callable[[], bool]) -> None:
        """``check()`` is asked at every probe; raising counts as not ready."""
        self._checks[name] = check

    def expect(self, name: str) -> None:
        """A condition that holds once ``mark(name)`` is called (e.g. listeners bound)."""
        self._flags.setdefault(name, False)
        self._checks[name] = lambda: self._flags[name]

    def mark(self, name: str, ready: bool = True) -> None:
        self._flags[name] = ready
        self._checks.setdefault(name, lambda: self._flags[name])

    def unmet(self) -> list[str]:
        missing = []
        for name, check in self._checks.items():
            try:
                ok = bool(check())
            except Exception:
                ok = False
            if not ok:
                missing.append(name)
        return missing


def health_endpoint(store, boundary: Boundary) -> Endpoint:
    def health(call: Call) -> Reply:
        try:
            store.stats()
        except Exception as exc:
            return Reply(503, {"status": "degraded", "store": str(exc) or type(exc).__name__})
        return Reply(200, {"status": "ok"})
    return Endpoint("health", {"GET": health}, boundary)


def healthz_endpoint(boundary: Boundary) -> Endpoint:
    return Endpoint("healthz", {"GET": lambda call: Reply(200, {"status": "ok"})}, boundary)


def readyz_endpoint(readiness: Readiness, boundary: Boundary) -> Endpoint:
    def readyz(call: Call) -> Reply:
        unmet = readiness.unmet()
        if unmet:
            return Reply(503, {"status": "not ready", "unmet": unmet})
        return Reply(200, {"status": "ready"})
    return Endpoint("readyz", {"GET": readyz}, boundary)
