"""The pre-packed TXT format: what ``build`` packs, every reader reads the same way."""

import struct

from hypothesis import given
from hypothesis import strategies as st

from dmfdns.dns import rrblob
from dmfdns.proto import txt

_items = st.lists(st.tuples(st.binary(max_size=600), st.integers(0, 2**40)), max_size=8)


def test_an_entry_is_expiry_rdlength_rdata():
    blob = rrblob.build([(b"hello", 1_000), (b"x" * 300, 2_000)])
    long_rdata = txt.rdata(b"x" * 300)
    assert blob == (struct.pack(">QH", 1_000, 6) + b"\x05hello"
                    + struct.pack(">QH", 2_000, len(long_rdata)) + long_rdata)
    assert list(rrblob.entries(blob)) == [(1_000, b"\x05hello"), (2_000, long_rdata)]


@given(_items, st.integers(0, 2**40))
def test_the_readers_agree_on_what_is_live(items, now_ms):
    blob = rrblob.build(items)
    alive = [(expiry, txt.rdata(value)) for value, expiry in items if expiry > now_ms]
    assert rrblob.live(blob, now_ms) == alive

    tails, soonest = rrblob.live_wire_rdata(blob, now_ms)
    assert tails == [len(rdata).to_bytes(2, "big") + rdata for _, rdata in alive]
    assert soonest == min((e for e, _ in alive), default=rrblob.FOREVER_MS)

    last = rrblob.live_until(memoryview(blob), now_ms)
    assert last == (max(e for e, _ in alive) - 1 if alive else None)


def test_nothing_is_live_at_or_after_the_expiry():
    blob = rrblob.build([(b"a", 5_000)])
    assert rrblob.live_wire_rdata(blob, 4_999) == ([b"\x00\x02\x01a"], 5_000)
    assert rrblob.live_wire_rdata(blob, 5_000) == ([], rrblob.FOREVER_MS)
    assert rrblob.live_until(blob, 4_999) == 4_999
    assert rrblob.live_until(blob, 5_000) is None
