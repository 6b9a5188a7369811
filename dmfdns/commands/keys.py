"""``dmfdns keygen``: create an operator Ed25519 seed (docs/wire-format.md §2.3)."""

import os
import pathlib

from ..proto.signing import Signer
from ..proto.keyfile import parse_seed
from . import CommandError


def register(sub) -> None:
    p = sub.add_parser(
        "keygen", help="create an operator Ed25519 key (64 hex characters)",
        description="Create an operator Ed25519 key: a random 32-byte seed written as 64 hex "
                    "characters (to stdout, or to --out with mode 0600), and its public key "
                    "on stderr. The public key is what nodes pin ([cluster] operator_key); "
                    "the seed signs cluster manifests and bootstrap records.")
    p.add_argument("--out", metavar="FILE",
                   help="write the seed here (mode 0600; refuses to overwrite) instead of stdout")
    p.add_argument("--public", metavar="KEYFILE",
                   help="print the public key of an existing key file and exit")
    p.set_defaults(handler=keygen)


def keygen(args, ctx) -> int:
    if args.public:
        signer = Signer(read_seed_file(args.public))
        print(signer.public_key.hex(), file=ctx.stdout)
        return 0
    seed = os.urandom(32)
    signer = Signer(seed)
    if args.out:
        _write_private(pathlib.Path(args.out), seed.hex() + "\n")
        print(f"wrote {args.out}", file=ctx.stderr)
    else:
        print(seed.hex(), file=ctx.stdout)
    print(f"public key: {signer.public_key.hex()}", file=ctx.stderr)
    return 0


def read_seed_file(path: str) -> bytes:
    """A key file's 32-byte seed: 32 raw bytes or 64 hex characters."""
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read key file {path}: {exc.strerror}") from None
    seed = parse_seed(data)
    if seed is None:
        raise CommandError(f"{path}: a key file holds 32 raw bytes or 64 hex characters")
    return seed


def _write_private(path: pathlib.Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{path} exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
