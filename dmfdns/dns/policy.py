"""The responder's policy stage: what may be sent to whom, once the answer is known.

A policy sees every response the responder is about to return, with the query and who
asked (``Request``), and returns the response to send (the same one, a replacement such
as a truncated answer) or None for silence. The policies run in order and the first that
returns None ends the stage. This is where response-rate limiting lives (``rrl``) and
where later policies belong (address ACLs, TSIG-only zones), like twisted.names'
``allowQuery`` but after the decision, since rate limiting classifies the answer.

A policy must not raise: the transport would answer SERVFAIL and log it as a bug.
"""

from typing import Protocol


class Request:
    """One query on its way out of the responder."""

    __slots__ = ("query", "response", "client", "proto", "now", "valid_cookie")

    def __init__(self, query: bytes, response: bytes, client, proto: str, now: float,
                 valid_cookie: bool):
        self.query = query                  # the query as received
        self.response = response            # the response the previous stages let through
        self.client = client                # the client's address string (or None)
        self.proto = proto                  # "udp", "tcp", ...: the transport
        self.now = now                      # the injected clock's seconds
        self.valid_cookie = valid_cookie    # the query carried a server cookie of ours


class Policy(Protocol):
    def decide(self, request: Request) -> bytes | None:
        """The response to send for ``request`` (``request.response`` or another), or None
        to send nothing."""
