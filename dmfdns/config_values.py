"""Typed readers of configuration values: pure, no files and no environment.

A reader is called as ``check(value, where)`` with a value from the TOML file and the place
it came from (``"[dns] answer_ttl"``); it returns the converted value or raises a one-line
``ConfigError`` naming the place, what was expected and what was found. Its ``describe``
attribute is the short kind shown in the configuration reference.

Sizes accept a byte count or a string with a binary unit (``"1GiB"``, ``"64k"``), as Knot
does; durations accept seconds or a string with a unit (``"500ms"``, ``"10s"``, ``"5m"``,
``"1h"``, ``"1d"``), as Knot and NSD operators expect (docs/decisions.md §8.1).
"""

import ipaddress
import pathlib
import re
from dataclasses import dataclass, field

from .proto.heartbeat import endpoint_problem
from .proto.names import folded


class ConfigError(Exception):
    """An invalid configuration; the message is one line fit for an operator."""


def fail(where: str, expected: str, value) -> None:
    raise ConfigError(f"{where}: must be {expected}, got {value!r}")


def setting(default, check, doc: str):
    """A dataclass field read by ``check`` and documented by ``doc``."""
    return field(default=default, metadata={"check": check, "doc": doc})


def _described(kind: str):
    def attach(check):
        check.describe = kind
        return check
    return attach


def _in_range(parse, lo, hi, expected: str, kind: str):
    """A reader of what ``parse`` makes of a value (None: unreadable), within lo..hi."""
    @_described(kind)
    def check(value, where):
        parsed = parse(value)
        if parsed is None or not lo <= parsed <= hi:
            fail(where, expected, value)
        return parsed
    return check


# --- numbers, sizes, durations ---------------------------------------------------------------

def _plain_int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _plain_number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


_SIZE = re.compile(r"\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)\s*", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(value) -> int | None:
    """Bytes from an integer or a string such as ``"512MiB"`` (binary units, as Knot)."""
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match:
        return int(match.group(1)) * _SIZE_UNITS[match.group(2)[:1].lower()]
    return _plain_int(value)


def parse_duration(value) -> float | None:
    """Seconds from a number or a string such as ``"500ms"``, ``"10s"``, ``"5m"``."""
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match:
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return _plain_number(value)


def integer(lo: int, hi: int):
    return _in_range(_plain_int, lo, hi, f"an integer from {lo} to {hi}",
                     f"integer {lo}..{hi}")


def number(lo: float, hi: float):
    return _in_range(_plain_number, lo, hi, f"a number from {lo:g} to {hi:g}",
                     f"number {lo:g}..{hi:g}")


def size(lo: int, hi: int):
    return _in_range(parse_size, lo, hi,
                     f"a size from {lo} to {hi} bytes (an integer or e.g. \"64MiB\")",
                     f"size {lo}..{hi} bytes")


def duration(lo: float, hi: float):
    return _in_range(parse_duration, lo, hi,
                     f"a duration from {lo:g} s to {hi:g} s (seconds or e.g. \"10s\")",
                     f"duration {lo:g}..{hi:g} s")


AUTO = "auto"


def or_auto(check):
    """``check``, or the word ``"auto"``, kept as ``AUTO`` for the node to work the value
    out when it starts (the answer cache sized to the zone: ``dns/cache_sizing.py``)."""
    @_described(f"\"auto\" or {check.describe}")
    def read(value, where):
        if value == AUTO:
            return AUTO
        try:
            return check(value, where)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (or \"auto\")") from None
    return read


# --- booleans, strings, paths ----------------------------------------------------------------

@_described("boolean")
def boolean(value, where):
    if not isinstance(value, bool):
        fail(where, "true or false", value)
    return value


def text(max_len: int, pattern: str | None = None, hint: str = ""):
    compiled = re.compile(pattern) if pattern else None

    @_described(f"string (≤ {max_len})")
    def check(value, where):
        if not isinstance(value, str) or len(value) > max_len or not value.isprintable():
            fail(where, f"a printable string of at most {max_len} characters", value)
        if compiled and not compiled.fullmatch(value):
            fail(where, hint, value)
        return value
    return check


def choice(*options: str):
    @_described(" | ".join(options))
    def check(value, where):
        if value not in options:
            fail(where, "one of " + ", ".join(repr(o) for o in options), value)
        return value
    return check


@_described("path or \"\"")
def optional_path(value, where):
    if not isinstance(value, str):
        fail(where, "a path string (\"\" for none)", value)
    return pathlib.Path(value) if value else None


@_described("path")
def path(value, where):
    if not isinstance(value, str) or not value:
        fail(where, "a non-empty path string", value)
    return pathlib.Path(value)


@_described("64 hex or \"\"")
def hex_key(value, where):
    if not isinstance(value, str) or (value and not re.fullmatch(r"[0-9a-fA-F]{64}", value)):
        fail(where, "64 hex characters (an Ed25519 public key) or \"\"", value)
    return value.lower()


@_described("DNS name or \"\"")
def domain(value, where):
    if not isinstance(value, str) or (value and not re.fullmatch(
            r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
            r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?", value)) or len(value) > 64:
        fail(where, "a DNS name of at most 64 characters or \"\"", value)
    return folded(value)


@_described("list of DNS names")
def domain_list(value, where):
    if not isinstance(value, list) or len(value) > 1000:
        fail(where, "a list of at most 1000 DNS names", value)
    return tuple(domain(item, where) for item in value if item != "")


# --- addresses and URLs ------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class ListenAddress:
    """One ``host:port`` to bind; ``host`` is an IP literal (IPv6 without brackets)."""

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


def parse_listen(value) -> ListenAddress | None:
    """``"127.0.0.1:5353"`` or ``"[::1]:5353"`` → ListenAddress; None if malformed."""
    if not isinstance(value, str):
        return None
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
        if ":" in host:  # a bare IPv6 literal needs brackets to carry a port
            return None
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if value.startswith("[") != (address.version == 6):
        return None
    return ListenAddress(str(address), int(port))


def listen_list(min_items: int):
    @_described("list of \"host:port\"")
    def check(value, where):
        if not isinstance(value, list) or len(value) < min_items:
            fail(where, f"a list of at least {min_items} \"host:port\" strings", value)
        addresses = []
        for item in value:
            address = parse_listen(item)
            if address is None:
                fail(where, "\"IPv4:port\" or \"[IPv6]:port\" with an IP literal and a "
                     "port 0-65535", item)
            addresses.append(address)
        if len(set(addresses)) != len(addresses):
            fail(where, "a list without duplicates", value)
        _no_dual_stack_overlap(addresses, where)
        return tuple(addresses)
    return check


def _no_dual_stack_overlap(addresses, where: str) -> None:
    """A wildcard takes its port on every address: ``0.0.0.0:P`` every IPv4 one, and
    ``[::]:P`` every IPv6 one *and* every IPv4 one (a dual-stack socket: IPV6_V6ONLY is off
    by default on Linux). Another address on P beside it cannot bind."""
    for wildcard in (a for a in addresses if a.host in ("::", "0.0.0.0") and a.port != 0):
        for address in addresses:
            if address is wildcard or address.port != wildcard.port:
                continue
            if wildcard.host == "::" or ":" not in address.host:
                raise ConfigError(
                    f"{where}: {address} and {wildcard} overlap: {wildcard} takes port "
                    f"{wildcard.port} on every address"
                    + (" (IPv4 too)" if wildcard.host == "::" else "")
                    + f"; list {wildcard} alone")


@_described("list of CIDR")
def networks(value, where):
    if not isinstance(value, list):
        fail(where, "a list of IP addresses or CIDR networks", value)
    found = []
    for item in value:
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except (TypeError, ValueError):
            fail(where, "an IP address or CIDR network such as \"10.0.0.0/8\"", item)
    return tuple(found)


@_described("list of URLs")
def url_list(value, where):
    if not isinstance(value, list) or len(value) > 32:
        fail(where, "a list of at most 32 \"http(s)://host:port\" URLs", value)
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(r"https?://[^/\s?#]+/?", item):
            fail(where, "an \"http(s)://host:port\" URL without a path", item)
    if len(set(value)) != len(value):
        fail(where, "a list without duplicates", value)
    return tuple(item.rstrip("/") for item in value)


@_described("table of https URL = path")
def origin_paths(value, where):
    """``{"https://host[:port]" = "file", ...}`` -> ``(("https://host:port", Path), ...)``
    (the origin with its port spelled out, lowercased: one key per TLS origin)."""
    if not isinstance(value, dict) or len(value) > 32:
        fail(where, "a table of at most 32 \"https://host[:port]\" = \"file\" entries", value)
    found = {}
    for url, file in value.items():
        match = re.fullmatch(r"https://(\[[0-9a-fA-F:.]+\]|[^/\s?#:\[\]]+)(?::(\d{1,5}))?/?",
                             url, re.IGNORECASE)
        if match is None or not (0 < int(match.group(2) or 443) < 65536):
            fail(where, "\"https://host[:port]\" keys", url)
        if not isinstance(file, str) or not file:
            fail(f"{where} {url!r}", "a non-empty path string", file)
        origin = f"https://{match.group(1)}:{int(match.group(2) or 443)}".lower()
        if origin in found:
            fail(where, "one entry per origin", url)
        found[origin] = pathlib.Path(file)
    return tuple(sorted(found.items()))


@_described("URL or \"\"")
def heartbeat_endpoint(value, where):
    if not isinstance(value, str):
        fail(where, "an http(s)://host[:port] URL or \"\"", value)
    if value:
        problem = endpoint_problem(value)
        if problem:
            raise ConfigError(f"{where}: {problem} (a heartbeat endpoint names a real host, "
                              f"never a loopback or private address), got {value!r}")
    return value
