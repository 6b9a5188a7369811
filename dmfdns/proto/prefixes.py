"""TXT prefixes and body magics of every v=dmp1 record type (docs/wire-format.md §1.2).

The four oldest types end their prefix with ``d=``; the newer ones end at ``;`` and carry a
7-byte magic at the start of the decoded body. Dispatch always uses the full prefix.
"""

CHUNK = "v=dmp1;t=chunk;d="
SLOT_MANIFEST = "v=dmp1;t=manifest;d="
IDENTITY = "v=dmp1;t=identity;d="
PREKEY = "v=dmp1;t=prekey;d="
CLUSTER = "v=dmp1;t=cluster;"
BOOTSTRAP = "v=dmp1;t=bootstrap;"
ROTATION = "v=dmp1;t=rotation;"
REVOCATION = "v=dmp1;t=revocation;"
HEARTBEAT = "v=dmp1;t=heartbeat;"
CLAIM = "v=dmp1;t=claim;"

ALL = (CHUNK, SLOT_MANIFEST, IDENTITY, PREKEY, CLUSTER, BOOTSTRAP, ROTATION, REVOCATION,
       HEARTBEAT, CLAIM)

MAGIC_CLUSTER = b"DMPCL01"
MAGIC_BOOTSTRAP = b"DMPBS01"
MAGIC_ROTATION = b"DMPROT1"
MAGIC_REVOCATION = b"DMPRV01"
MAGIC_HEARTBEAT = b"DMPHB03"
MAGIC_HEARTBEAT_LEGACY = b"DMPHB02"
MAGIC_CLAIM = b"DMPCL01"  # same bytes as the cluster magic; only the prefix tells them apart

# Values starting with this are DMP protocol text (the reference's own sniff).
DMP_MARKER = "v=dmp"

# Cap on the wire length of the newer signed types (cluster, bootstrap, rotation, revocation).
MAX_SIGNED_WIRE = 1200
# Claims must fit one TXT character-string.
MAX_CLAIM_WIRE = 255


def record_type(value: str) -> str | None:
    """The prefix ``value`` starts with, or None if it is not a known v=dmp1 type."""
    for prefix in ALL:
        if value.startswith(prefix):
            return prefix
    return None
