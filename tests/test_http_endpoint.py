"""The one wrapper owns what a leaf declares it needs: the method, the path, the per-client
rate limit and the auth, checked in that order before the handler runs."""

import json

import pytest

from dmfdns.http.auth import BearerTokens
from dmfdns.http.endpoint import Endpoint, HttpError, Reply
from dmfdns.http.ratelimit import TokenBucketLimiter
from http_support import Harness

SECRET = {"Authorization": "Bearer s3cret"}


def one_name(args):
    if len(args) != 1 or not args[0]:
        raise HttpError(404, "not found")
    return args[0]


def probe(node, calls):
    def handler(call):
        calls.append((call.target, call.credential))
        return Reply(200, {"target": call.target})
    auth = BearerTokens(("s3cret",), status=403, message="forbidden")
    node.http.add("probe", Endpoint(
        "probe", {"GET": handler}, node.http.boundary, parses=one_name,
        limiter=TokenBucketLimiter(1.0, 2, node.clock.seconds), auth=auth))


def statuses(node, requests):
    return [node.request(method, path, headers=headers).status
            for method, path, headers in requests]


def test_the_handler_gets_the_parsed_target_once_every_need_is_met():
    node, calls = Harness(), []
    probe(node, calls)
    response = node.request("GET", "/probe/alpha", headers=SECRET)
    assert response.status == 200 and json.loads(response.body) == {"target": "alpha"}
    assert calls == [("alpha", None)]


def test_method_then_path_come_before_the_bucket_and_cost_nothing():
    node, calls = Harness(), []
    probe(node, calls)
    assert statuses(node, [("POST", "/probe/a", SECRET), ("GET", "/probe/", SECRET),
                           ("GET", "/probe/a/b", SECRET)]) == [405, 404, 404]
    # The two tokens of the bucket are still there.
    assert statuses(node, [("GET", "/probe/a", SECRET)] * 3) == [200, 200, 429]
    assert len(calls) == 2


def test_the_rate_limit_comes_before_auth_and_a_refused_call_never_reaches_the_handler():
    node, calls = Harness(), []
    probe(node, calls)
    refused = node.request("GET", "/probe/a")
    assert (refused.status, json.loads(refused.body)) == (403, {"error": "forbidden"})
    assert statuses(node, [("GET", "/probe/a", {}), ("GET", "/probe/a", SECRET)]) == \
        [403, 429]
    rate_limited = node.request("GET", "/probe/a", headers=SECRET)
    assert json.loads(rate_limited.body) == {"error": "rate limit exceeded"}
    assert calls == []
    node.clock.advance(1)
    assert node.request("GET", "/probe/a", headers=SECRET).status == 200


class NoHeaders:
    def header(self, name):
        return None


def test_bearer_tokens_open_without_tokens_unless_closed():
    assert BearerTokens(())(NoHeaders()) is None              # open: no error
    for auth in (BearerTokens((), closed_without_tokens=True), BearerTokens(("t",))):
        with pytest.raises(HttpError) as refusal:
            auth(NoHeaders())
        assert refusal.value.status == 401


def test_a_leaf_may_name_its_own_rate_limit_text():
    node = Harness()
    node.http.add("own", Endpoint("own", {"GET": lambda call: Reply(200, {})},
                                  node.http.boundary,
                                  limiter=TokenBucketLimiter(1.0, 1, node.clock.seconds),
                                  limited="registration rate limit exceeded"))
    assert node.request("GET", "/own").status == 200
    refused = node.request("GET", "/own")
    assert (refused.status, json.loads(refused.body)) == (
        429, {"error": "registration rate limit exceeded"})
