"""Waiting for several Deferreds at once, failing with the first real error."""

from twisted.internet import defer


async def all_of(deferreds) -> list:
    """The results of all ``deferreds`` (started already), in order.

    If any fails, the first failure's own exception is raised (not Twisted's ``FirstError``
    wrapper) once every Deferred has finished, so nothing is left running unobserved.
    """
    outcomes = await defer.DeferredList(list(deferreds), consumeErrors=True)
    for ok, value in outcomes:
        if not ok:
            value.raiseException()
    return [value for _, value in outcomes]
