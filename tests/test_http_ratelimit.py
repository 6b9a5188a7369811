"""Token buckets with an injected clock, and the client address behind trusted proxies."""

from dmfdns.http.ratelimit import ProxyTrust, TokenBucketLimiter


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_bucket_spends_its_burst_then_refills_at_the_rate():
    clock = FakeClock()
    limiter = TokenBucketLimiter(2.0, 3, clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back
    assert limiter.allow("a") and not limiter.allow("a")
    clock.now += 100  # never more than the burst
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]


def test_buckets_are_per_key_and_a_refusal_takes_nothing():
    clock = FakeClock()
    limiter = TokenBucketLimiter(1.0, 1, clock)
    assert limiter.allow("a") and not limiter.allow("a") and not limiter.allow("a")
    assert limiter.allow("b")
    clock.now += 1.0
    assert limiter.allow("a")


def test_a_clock_going_backwards_adds_no_tokens():
    clock = FakeClock()
    limiter = TokenBucketLimiter(1.0, 1, clock)
    assert limiter.allow("a")
    clock.now -= 50
    assert not limiter.allow("a")


def test_rate_zero_disables_the_limit():
    limiter = TokenBucketLimiter(0, 1, FakeClock())
    assert all(limiter.allow("a") for _ in range(100))


def test_tracked_keys_are_bounded_least_recently_used_first():
    clock = FakeClock()
    limiter = TokenBucketLimiter(1.0, 1, clock, max_keys=3)
    for key in "abc":
        limiter.allow(key)
    limiter.allow("a")  # a is now the most recent
    limiter.allow("d")  # evicts b
    assert len(limiter) == 3
    assert not limiter.allow("a")  # still tracked, still empty
    assert limiter.allow("b")  # forgotten: a fresh full bucket


def test_forwarded_for_is_ignored_from_untrusted_peers():
    trust = ProxyTrust(["10.0.0.0/8"])
    assert trust.client("192.0.2.1", ["198.51.100.1"]) == "192.0.2.1"
    assert ProxyTrust().client("10.0.0.1", ["198.51.100.1"]) == "10.0.0.1"


def test_the_client_is_the_rightmost_untrusted_hop():
    trust = ProxyTrust(["10.0.0.0/8", "2001:db8:1::/48"])
    assert trust.client("10.0.0.1", ["198.51.100.1"]) == "198.51.100.1"
    # A client-written left part cannot move the client: the right-most untrusted wins.
    assert trust.client("10.0.0.1", ["6.6.6.6, 198.51.100.1, 10.0.0.2"]) == "198.51.100.1"
    assert trust.client("10.0.0.1", ["6.6.6.6", "198.51.100.1"]) == "198.51.100.1"
    # Addresses come back in their canonical text form.
    assert trust.client("2001:db8:1::1", ["2001:0db8:0002:0:0:0:0:7, 2001:db8:1::2"]) \
        == "2001:db8:2::7"
    assert trust.client("10.0.0.1", ["10.0.0.3, 10.0.0.2"]) == "10.0.0.3"


def test_garbage_in_forwarded_for_stops_at_the_last_vouched_address():
    trust = ProxyTrust(["10.0.0.0/8"])
    assert trust.client("10.0.0.1", ["not-an-ip"]) == "10.0.0.1"
    assert trust.client("10.0.0.1", ["198.51.100.1, junk"]) == "10.0.0.1"
    assert trust.client("10.0.0.1", ["junk, 10.0.0.2"]) == "10.0.0.2"
    assert trust.client("10.0.0.1", []) == "10.0.0.1"
