"""Owner names of every v=dmp1 record (docs/wire-format.md §3).

Names are produced lowercase, without a trailing dot; ``zone`` arguments may carry one
trailing dot, which is dropped.
"""

import hashlib
import struct

from .names import drop_root_dot as _zone

SLOT_COUNT = 10
MAX_CHUNKS = 1024


def _hex(data: bytes, chars: int) -> str:
    return hashlib.sha256(data).hexdigest()[:chars]


def mailbox_label(recipient_id: bytes) -> str:
    """``mb-{hex12(H(recipient_id))}``: the recipient's mailbox label."""
    return f"mb-{_hex(recipient_id, 12)}"


def slot_for(msg_id: bytes) -> int:
    """The slot a sender picks: u32_be(msg_id[0:4]) mod 10."""
    return struct.unpack(">I", msg_id[:4])[0] % SLOT_COUNT


def slot(n: int, recipient_id: bytes, zone: str) -> str:
    if not 0 <= n < SLOT_COUNT:
        raise ValueError("slot is 0..9")
    return f"slot-{n}.{mailbox_label(recipient_id)}.{_zone(zone)}"


def message_key(msg_id: bytes, recipient_id: bytes, sender_spk: bytes) -> str:
    """hex12(H(msg_id || recipient_id || sender_ed25519_pub)), shared by a message's chunks."""
    return _hex(msg_id + recipient_id + sender_spk, 12)


def chunk(index: int, msg_key: str, zone: str) -> str:
    if not 0 <= index < MAX_CHUNKS:
        raise ValueError("chunk index is 0..1023")
    return f"chunk-{index:04d}-{msg_key}.{_zone(zone)}"


def identity_hashed(username: str, zone: str) -> str:
    return f"id-{_hex(username.encode('utf-8'), 16)}.{_zone(zone)}"


def identity_anchored(identity_domain: str) -> str:
    return f"dmp.{_zone(identity_domain).lower()}"


def prekeys(username: str, zone: str) -> str:
    # 12 hex characters here, not the 16 of the identity name (as the reference does).
    return f"prekeys.id-{_hex(username.encode('utf-8'), 12)}.{_zone(zone)}"


def cluster(cluster_name: str) -> str:
    return f"cluster.{_zone(cluster_name).lower()}"


def bootstrap(user_domain: str) -> str:
    return f"_dmp.{_zone(user_domain).lower()}"


def rotate_user_hashed(username: str, zone: str) -> str:
    return "rotate." + identity_hashed(username, zone)


def rotate_user_anchored(identity_domain: str) -> str:
    return "rotate." + identity_anchored(identity_domain)


def rotate_cluster(cluster_base: str) -> str:
    return "rotate." + cluster(cluster_base)


def rotate_bootstrap(user_domain: str) -> str:
    return "rotate." + bootstrap(user_domain)


def claim(slot_n: int, recipient_id: bytes, zone: str) -> str:
    if not 0 <= slot_n < SLOT_COUNT:
        raise ValueError("slot is 0..9")
    return f"claim-{slot_n}.{mailbox_label(recipient_id)}.{_zone(zone)}"


def heartbeat(zone: str) -> str:
    return f"_dnsmesh-heartbeat.{_zone(zone).lower()}"


def seen(zone: str) -> str:
    return f"_dnsmesh-seen.{_zone(zone).lower()}"
