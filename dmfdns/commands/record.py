"""``dmfdns record inspect``: decode and check any v=dmp1 value.

Exit status: 0 when the value is a valid record at ``--now``, 1 (with the reason on one
stderr line) when it is not, 2 for usage errors. VALUE may be the bare TXT value, the
quoted character-strings ``dig`` prints for a multi-string TXT record (joined, as readers
do), or ``-`` to read it from standard input.
"""

import argparse
import datetime
import json
import re
import sys

from ..proto import records
from . import CommandError

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"\s*')
_ESCAPE = re.compile(r"\\(\d{3}|.)")


def register(sub) -> None:
    parser = sub.add_parser("record", help="work with v=dmp1 record values")
    actions = parser.add_subparsers(dest="record_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("inspect", help="decode, verify and time-check one TXT value")
    p.add_argument("value", metavar="VALUE", help="the TXT value, or - to read standard input")
    p.add_argument("--now", type=_unix_time, metavar="UNIX",
                   help="judge time rules at this unix time (default: the current time)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--key", type=_public_key, metavar="HEX",
                   help="the Ed25519 public key (64 hex) the record must be signed by: the "
                        "owner's identity key for a prekey, the old key for a rotation")
    p.set_defaults(handler=inspect)


def _unix_time(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,20}", text.strip()):
        raise argparse.ArgumentTypeError(f"--now takes unix seconds, not {text!r}")
    return int(text)


def _public_key(text: str) -> bytes:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text.strip()):
        raise argparse.ArgumentTypeError("--key takes 64 hex characters (a 32-byte key)")
    return bytes.fromhex(text.strip())


def inspect(args, ctx) -> int:
    value = _read_value(args.value)
    now = int(ctx.now) if args.now is None else args.now
    result = records.inspect(value, now=now, key=args.key)
    if args.json:
        print(json.dumps({"type": result.type, "valid": result.valid, "reason": result.reason,
                          "fields": result.fields}), file=ctx.stdout)
    else:
        _print_human(result, ctx.stdout)
    if not result.valid:
        known = result.type not in (records.TEXT, records.UNKNOWN)
        raise CommandError(f"invalid {result.type}: {result.reason}" if known else result.reason)
    return 0


def _read_value(arg: str) -> str:
    text = sys.stdin.read().strip() if arg == "-" else arg
    if text.startswith('"'):
        joined = join_quoted(text)
        if joined is None:
            raise CommandError("VALUE starts with a quote but is not a sequence of quoted "
                               "TXT strings", status=2)
        return joined
    return text


def join_quoted(text: str) -> str | None:
    """Concatenate presentation-format character-strings (``"a" "b"``, with the escapes
    ``\\X`` and ``\\DDD`` of RFC 1035 section 5.1), or None if ``text`` is not only such
    strings."""
    raw, pos = bytearray(), 0
    while pos < len(text):
        match = _QUOTED.match(text, pos)
        part = None if match is None else _unescape(match.group(1))
        if part is None:
            return None
        raw += part
        pos = match.end()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _unescape(part: str) -> bytes | None:
    out, pos = bytearray(), 0
    for match in _ESCAPE.finditer(part):
        out += part[pos:match.start()].encode("utf-8")
        token = match.group(1)
        if token.isdigit():
            if int(token) > 255:
                return None
            out.append(int(token))
        else:
            out += token.encode("utf-8")
        pos = match.end()
    return bytes(out + part[pos:].encode("utf-8"))


def _print_human(result: records.Inspection, out) -> None:
    print(f"type: {result.type}", file=out)
    print(f"valid: {'yes' if result.valid else 'no'}", file=out)
    if result.reason:
        print(f"{'note' if result.valid else 'reason'}: {result.reason}", file=out)
    for name, value in result.fields.items():
        _print_field(name, value, out, indent="")


def _print_field(name, value, out, indent) -> None:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        print(f"{indent}{name}:", file=out)
        for item in value:
            lines = [f"{k}: {_scalar(k, v)}" for k, v in item.items()]
            print(f"{indent}  - " + f"\n{indent}    ".join(lines), file=out)
        return
    if isinstance(value, list) and len(value) > 1 and all(isinstance(v, str) for v in value):
        print(f"{indent}{name}:", file=out)
        for item in value:
            print(f"{indent}  - {item}", file=out)
        return
    print(f"{indent}{name}: {_scalar(name, value)}", file=out)


def _scalar(name, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    if name in ("ts", "exp") and isinstance(value, int):
        return f"{value} ({_utc(value)})"
    return str(value)


def _utc(seconds: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "beyond the calendar"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
