"""The DNS-name validator shared by cluster names, bootstrap domains and rotation subjects.

dmp-wire.md section 1.4: one trailing dot is accepted and normalised away; every label is
1..63 LDH characters (letters, digits, hyphen; no leading or trailing hyphen, no ``_``).
Comparisons are case-insensitive.
"""

import re

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def normalize(name) -> str | None:
    """``name`` without one trailing dot if it is a valid DNS name, else None."""
    if not isinstance(name, str) or not name or name.endswith(".."):
        return None
    stripped = name[:-1] if name.endswith(".") else name
    if not stripped or not stripped.isascii():
        return None
    if all(_LABEL.fullmatch(label) for label in stripped.split(".")):
        return stripped
    return None


def same_name(a: str, b: str) -> bool:
    """Case-insensitive comparison after removing one trailing dot from each."""
    strip = lambda n: n[:-1] if n.endswith(".") else n  # noqa: E731
    return strip(a).casefold() == strip(b).casefold()
