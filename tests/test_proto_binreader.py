"""The body reader shared by the record parsers: field reads and its failure rule."""

from hypothesis import given, strategies as st

from dmfdns.proto.binreader import Reader


def test_reads_fields_in_order_to_the_end():
    body = b"\x07" + b"\x01\x02" + (5).to_bytes(8, "big") + b"\x00\x03abc" + b"\x02hi"
    reader = Reader(body)
    assert reader.u8() == 7
    assert reader.u16() == 0x0102
    assert reader.u64() == 5
    assert reader.prefixed(2) == b"abc"
    assert not reader.done
    assert reader.prefixed_text(1, "ascii") == "hi"
    assert reader.done


def test_a_short_read_fails_and_every_later_read_fails_too():
    reader = Reader(b"\x05ab\x01")
    assert reader.prefixed(1) is None  # declares 5 bytes, 3 left
    assert reader.u8() is None  # a byte is there, but the reader has failed
    assert reader.take(0) is None
    assert not reader.done


def test_undecodable_text_fails_the_reader():
    reader = Reader(b"\x02\xc3\x28")
    assert reader.prefixed_text(1, "utf-8") is None
    assert reader.failed and not reader.done


def test_done_needs_the_last_byte_read():
    reader = Reader(b"\x00\x01\x02")
    assert reader.u16() == 1
    assert not reader.done
    assert reader.u8() == 2 and reader.done


def test_negative_or_missing_counts_fail():
    assert Reader(b"abc").take(-1) is None
    assert Reader(b"abc").take(None) is None
    assert Reader(b"abc").text(None, "ascii") is None


@given(st.binary(max_size=64), st.lists(st.integers(0, 9), max_size=12))
def test_never_raises_and_done_means_every_read_succeeded(data, widths):
    reader = Reader(data)
    results = [reader.take(w) for w in widths]
    if reader.done:
        assert all(r is not None for r in results)
        assert sum(widths) == len(data)
    if any(r is None for r in results):
        assert not reader.done
