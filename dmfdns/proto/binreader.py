"""Reading a record body field by field, never raising (docs/wire-format.md §4).

Every ``v=dmp1`` body is a run of big-endian integers, fixed-size keys and length-prefixed
strings. A ``Reader`` walks one body from the front. A read that would run past the end, or
text that does not decode, answers None and leaves the reader failed: every later read
answers None too and ``done`` stays False. A parser can therefore read all its fields and
check once, at the end, that ``done`` is True: then every read succeeded and the last field
ended exactly at the end of the body.
"""


class Reader:
    """Fields off ``data`` from ``pos`` on; see the module docstring for the failure rule."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = bytes(data), pos
        self.failed = False

    def take(self, count: int | None) -> bytes | None:
        """The next ``count`` bytes, or None if fewer are left (or ``count`` is None)."""
        if self.failed or count is None or count < 0 or self.pos + count > len(self.data):
            return self._fail()
        self.pos += count
        return self.data[self.pos - count:self.pos]

    def uint(self, width: int) -> int | None:
        """A big-endian unsigned integer of ``width`` bytes."""
        raw = self.take(width)
        return None if raw is None else int.from_bytes(raw, "big")

    def u8(self) -> int | None:
        return self.uint(1)

    def u16(self) -> int | None:
        return self.uint(2)

    def u64(self) -> int | None:
        return self.uint(8)

    def prefixed(self, width: int = 1) -> bytes | None:
        """The bytes behind a ``width``-byte big-endian length."""
        return self.take(self.uint(width))

    def text(self, count: int | None, encoding: str) -> str | None:
        """The next ``count`` bytes decoded; None (and failed) if they do not decode."""
        raw = self.take(count)
        if raw is None:
            return None
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            return self._fail()

    def prefixed_text(self, width: int, encoding: str) -> str | None:
        """The text behind a ``width``-byte big-endian length."""
        return self.text(self.uint(width), encoding)

    @property
    def done(self) -> bool:
        """True iff no read failed and the body has been read to its last byte."""
        return not self.failed and self.pos == len(self.data)

    def _fail(self) -> None:
        self.failed = True
        return None
