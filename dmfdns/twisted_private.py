"""Every use of Twisted's private API, in one place (the rest of dmfdns uses public API only).

``pyproject.toml`` takes ``twisted`` unpinned above, so each name here may move in a
release; ``tests/test_twisted_private.py`` checks each one exists and still does what we
rely on, and fails naming the name when it does not.

* ``HTTPConnectionPool._factory`` / ``_HTTP11ClientFactory``: the pool builds one factory
  per outbound connection, and a Factory logs "Starting factory" and "Stopping factory"
  for each (two log lines per peer call); Agent offers no public way to quiet them.
* ``HTTPChannel._respondToBadRequestAndDisconnect``: twisted.web calls it for a malformed
  request line, header or ``Content-Length`` and answers a bare 400; overriding it is the
  only way to answer those with the node's JSON error instead.
"""

from twisted.web import client, http

BAD_REQUEST_HOOK = "_respondToBadRequestAndDisconnect"


class _QuietFactory(client._HTTP11ClientFactory):
    noisy = False


def quiet_client_pool(pool: client.HTTPConnectionPool) -> client.HTTPConnectionPool:
    """``pool``, building factories that log nothing per connection."""
    pool._factory = _QuietFactory
    return pool


class BadRequestHook(http.HTTPChannel):
    """An ``HTTPChannel`` whose answer to a malformed request is ``bad_request()``."""

    def bad_request(self) -> None:
        raise NotImplementedError

    def _respondToBadRequestAndDisconnect(self):
        self.bad_request()
