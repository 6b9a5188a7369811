"""The cluster manifest (docs/wire-format.md §4.5): vectors, sign rules, parse order, fuzz."""

import json
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmfdns.proto import b64, cluster_manifest as cm, prefixes
from dmfdns.proto.keys import UserKeys
from dmfdns.proto.signing import Signer

CASES = json.loads(
    (pathlib.Path(__file__).parent / "vectors" / "cluster_manifest.json").read_text())
VECTOR_TS = 1893456000
# 2030-01-01 to 2035-01-01 is 5 * 365 days plus one leap day, one day beyond the parser's
# 5-year cap, so the round trips are parsed a day before expiry.
VECTOR_NOW = 2051222400 - 86400

SIGNER = Signer(bytes(range(32)))
OTHER = Signer(bytes(32))
NOW = 1_800_000_000
NODES = [cm.ClusterNode("n1", "https://a.example:8053", "192.0.2.1:53"),
         cm.ClusterNode("n2", "http://b.example", None)]


def wire_of(case) -> str:
    return bytes.fromhex(case["expected_wire_hex"]).decode("ascii")


def sign_vector(case) -> str:
    i = case["inputs"]
    signer = UserKeys.from_x25519_private(bytes.fromhex(case["operator_seed_hex"])).signer
    nodes = [cm.ClusterNode(n["node_id"], n["http_endpoint"], n["dns_endpoint"])
             for n in i["nodes"]]
    return cm.sign(i["seq"], i["exp"], bytes.fromhex(i["operator_spk_hex"]), i["cluster_name"],
                   nodes, signer)


@pytest.mark.parametrize("case", CASES, ids=[c["description"] for c in CASES])
def test_vector(case):
    wire = wire_of(case)
    if "inputs" in case:
        assert sign_vector(case) == wire
        assert (len(wire) > 255) == case.get("expected_multi_string", False)
    if "expected_parse_result" in case:
        assert case["expected_parse_result"] == "none"
        key = bytes.fromhex(case.get("verify_with_operator_spk_hex")
                            or case["inputs"]["operator_spk_hex"])
        now = case.get("verify_with_now", VECTOR_NOW)
        assert cm.parse_and_verify(wire, key, now=now) is None
        return
    key = bytes.fromhex(case["inputs"]["operator_spk_hex"])
    record = cm.parse_and_verify(wire, key, now=VECTOR_NOW,
                                 expected_cluster_name=case["inputs"]["cluster_name"])
    assert record.cluster_name == case["expected_parse_cluster_name"]
    assert record.seq == case["expected_parse_seq"]
    assert [(n.node_id, n.http_endpoint, n.dns_endpoint) for n in record.nodes] == [
        (n["node_id"], n["http_endpoint"], n["dns_endpoint"]) for n in case["inputs"]["nodes"]]
    assert cm.time_problem(record, VECTOR_TS) == "expiry more than 5 years ahead"


def test_expired_vector_decodes_and_names_its_time_problem():
    case = CASES[3]
    record = cm.decode(wire_of(case))
    assert record is not None and record.exp == 100
    assert cm.time_problem(record, case["verify_with_now"]) == "expired"
    assert cm.time_problem(record, 100) is None


def make(seq=1, exp=NOW + 3600, name="mesh.example.com", nodes=NODES, signer=SIGNER,
         spk=None) -> str:
    return cm.sign(seq, exp, spk or signer.public_key, name, nodes, signer)


def test_round_trip_normalises_the_name_and_empty_dns_endpoint():
    nodes = [cm.ClusterNode("n1", "https://a.example", "")]
    record = cm.parse_and_verify(make(name="Mesh.Example.COM.", nodes=nodes), SIGNER.public_key,
                                 now=NOW)
    assert record.cluster_name == "Mesh.Example.COM"
    assert record.nodes == (cm.ClusterNode("n1", "https://a.example", None),)
    assert record.operator_spk == SIGNER.public_key


@pytest.mark.parametrize("kwargs, message", [
    (dict(seq=2**64), "u64"),
    (dict(exp=-1), "u64"),
    (dict(name="bad_name.example"), "DNS name"),
    (dict(name="a." * 32 + "b"), "64 bytes"),
    (dict(name=""), "DNS name"),
    (dict(nodes=[]), "1..32"),
    (dict(nodes=[cm.ClusterNode(f"n{i}", "http://x") for i in range(33)]), "1..32"),
    (dict(nodes=[cm.ClusterNode("n1", "http://x"), cm.ClusterNode("n1", "http://y")]),
     "unique"),
    (dict(nodes=[cm.ClusterNode("", "http://x")]), "1..16"),
    (dict(nodes=[cm.ClusterNode("x" * 17, "http://x")]), "1..16"),
    (dict(nodes=[cm.ClusterNode("nö", "http://x")]), "ASCII"),
    (dict(nodes=[cm.ClusterNode("n1", "")]), "1..128"),
    (dict(nodes=[cm.ClusterNode("n1", "h" * 129)]), "1..128"),
    (dict(nodes=[cm.ClusterNode("n1", "http://x", "d" * 65)]), "64"),
    (dict(spk=bytes(32)), "signer"),
    (dict(nodes=[cm.ClusterNode(f"n{i:02d}", "https://" + "h" * 100, "d" * 60)
                 for i in range(6)]), "1200"),
])
def test_sign_refuses_what_the_protocol_forbids(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_wrong_pinned_key_is_refused_even_if_embedded_key_verifies():
    wire = make()
    assert cm.decode(wire) is not None
    assert cm.decode(wire, OTHER.public_key) is None
    assert cm.parse_and_verify(wire, OTHER.public_key, now=NOW) is None
    assert cm.parse_and_verify(wire, None, now=NOW) is None


def _body(name=b"mesh.example.com", nodes=b"\x01\x02n1\x00\x08http://x\x00\x00", spk=None,
          magic=prefixes.MAGIC_CLUSTER) -> bytes:
    return (magic + struct.pack(">QQ", 1, NOW + 60) + (spk or SIGNER.public_key)
            + bytes([len(name)]) + name + nodes)


def _resign(body: bytes, signer=SIGNER) -> str:
    return prefixes.CLUSTER + b64.encode(body + signer.sign(body))


def test_hand_built_body_decodes():
    record = cm.decode(_resign(_body()), SIGNER.public_key)
    assert record.nodes == (cm.ClusterNode("n1", "http://x", None),)


def test_zero_nodes_is_accepted_on_parse():
    assert cm.decode(_resign(_body(nodes=b"\x00")), SIGNER.public_key).nodes == ()


def test_65_byte_name_only_with_trailing_dot():
    name = b"a" * 62 + b".b"
    assert cm.decode(_resign(_body(name=name + b".")), SIGNER.public_key).cluster_name == (
        name.decode())
    assert cm.decode(_resign(_body(name=name + b"c")), SIGNER.public_key) is None


@pytest.mark.parametrize("body", [
    _body(magic=b"DMPCL02"),
    _body(name=b"bad_name"),
    _body(name=b""),
    _body(name=b"\xff.example"),
    _body(nodes=b""),
    _body(nodes=bytes([33])),
    _body(nodes=b"\x01\x02n1\x00\x08http://x\x00\x00" + b"\0"),   # trailing byte
    _body(nodes=b"\x02\x02n1\x00\x08http://x\x00\x00\x02n1\x00\x08http://y\x00\x00"),  # dup id
    _body(nodes=b"\x01\x00\x00\x08http://x\x00\x00"),              # empty node id
    _body(nodes=b"\x01\x02n\xff\x00\x08http://x\x00\x00"),         # non-ASCII node id
    _body(nodes=b"\x01\x02n1\x00\x00\x00\x00"),                    # empty http endpoint
    _body(nodes=b"\x01\x02n1\x00\x81" + b"h" * 129 + b"\x00\x00"),  # http endpoint > 128
    _body(nodes=b"\x01\x02n1\x00\x08http://x\x00\x41" + b"d" * 65),  # dns endpoint > 64
    _body(nodes=b"\x01\x02n1\x00\x08http://x\x00\x05ab"),          # dns endpoint cut short
    _body(spk=OTHER.public_key),                                   # embedded key differs
])
def test_malformed_bodies_are_refused_even_when_signed_by_the_pinned_key(body):
    assert cm.decode(_resign(body), SIGNER.public_key) is None


def test_over_long_wire_is_refused_before_decoding():
    body = _body(nodes=b"\x01\x02n1\x03\x84" + b"h" * 900 + b"\x00\x00")
    wire = _resign(body)
    assert len(wire) > 1200
    assert cm.decode(wire, SIGNER.public_key) is None


def test_time_rules():
    record = cm.decode(make(exp=NOW))
    assert cm.time_problem(record, NOW) is None
    assert cm.time_problem(record, NOW + 1) == "expired"
    assert cm.parse_and_verify(make(exp=NOW - 1), SIGNER.public_key, now=NOW) is None
    five_years = 5 * 365 * 86400
    assert cm.parse_and_verify(make(exp=NOW + five_years), SIGNER.public_key, now=NOW)
    far = make(exp=NOW + five_years + 1)
    assert cm.parse_and_verify(far, SIGNER.public_key, now=NOW) is None
    assert cm.time_problem(cm.decode(far), NOW) == "expiry more than 5 years ahead"


@pytest.mark.parametrize("expected, ok", [
    ("mesh.example.com", True),
    ("MESH.example.com.", True),
    ("mesh.example.org", False),
    ("mesh.example.com..", False),
])
def test_cluster_name_binding(expected, ok):
    wire = make(name="Mesh.Example.com")
    record = cm.parse_and_verify(wire, SIGNER.public_key, now=NOW, expected_cluster_name=expected)
    assert (record is not None) == ok


_node_ids = st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=16)
_nodes = st.lists(
    st.builds(cm.ClusterNode, _node_ids,
              st.text(min_size=1, max_size=20),
              st.none() | st.text(min_size=1, max_size=16)),
    min_size=1, max_size=4, unique_by=lambda n: n.node_id)


@given(seq=st.integers(0, 2**64 - 1), exp=st.integers(0, 2**64 - 1), nodes=_nodes,
       name=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{1,10}){0,3}",
                          fullmatch=True))
@settings(max_examples=300)
def test_sign_decode_round_trip(seq, exp, nodes, name):
    record = cm.decode(make(seq=seq, exp=exp, name=name, nodes=nodes), SIGNER.public_key)
    assert record == cm.ClusterManifest(seq, exp, SIGNER.public_key, name, tuple(nodes))


VALID_WIRE = make()


def _well_formed_or_none(record):
    if record is not None:
        assert isinstance(record, cm.ClusterManifest)
        assert len(record.nodes) <= 32 and len(record.operator_spk) == 32
        assert len({n.node_id for n in record.nodes}) == len(record.nodes)


@given(st.text())
@settings(max_examples=2000)
def test_random_text_never_raises(text):
    _well_formed_or_none(cm.parse_and_verify(text, SIGNER.public_key, now=NOW))
    _well_formed_or_none(cm.decode(text))


@given(st.binary(max_size=600))
@settings(max_examples=2000)
def test_random_base64_behind_the_prefix_never_raises(data):
    wire = prefixes.CLUSTER + b64.encode(data)
    _well_formed_or_none(cm.parse_and_verify(wire, SIGNER.public_key, now=NOW))
    _well_formed_or_none(cm.decode(wire))


@given(st.binary(max_size=300))
@settings(max_examples=2000)
def test_signed_random_bodies_never_raise(tail):
    # Signing lets random bytes past the verify-first gate into the body parser.
    _well_formed_or_none(cm.decode(_resign(_body()[:55] + tail), SIGNER.public_key))
    _well_formed_or_none(cm.decode(_resign(_body(nodes=tail)), SIGNER.public_key))


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1))
@settings(max_examples=2000)
def test_truncations_are_refused(cut):
    assert cm.parse_and_verify(VALID_WIRE[:cut], SIGNER.public_key, now=NOW) is None


@given(st.integers(min_value=0, max_value=len(VALID_WIRE) - 1), st.integers(0, 7))
@settings(max_examples=2000)
def test_bit_flips_are_refused(pos, bit):
    flipped = VALID_WIRE[:pos] + chr(ord(VALID_WIRE[pos]) ^ (1 << bit)) + VALID_WIRE[pos + 1:]
    assert cm.parse_and_verify(flipped, SIGNER.public_key, now=NOW) is None
