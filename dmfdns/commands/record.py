"""``dmfdns record inspect``: decode and check any v=dmp1 value."""


def register(sub) -> None:
    pass
