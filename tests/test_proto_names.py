"""The one home of names: owner-name canonical form, the LDH check of names inside
records, and the reversed-label store key."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmfdns.proto import names


@pytest.mark.parametrize("raw, expected", [
    ("Slot-3.MB-ab.Mesh.Test.", "slot-3.mb-ab.mesh.test"),
    ("_dmp.example.org", "_dmp.example.org"),
    ("_dnsmesh-heartbeat.mesh.test", "_dnsmesh-heartbeat.mesh.test"),
    ("a" * 63 + ".test", "a" * 63 + ".test"),
])
def test_canonical_lowercases_and_drops_the_root_dot(raw, expected):
    assert names.canonical(raw) == expected


@pytest.mark.parametrize("raw", [
    "", ".", "a..b", "a.b..", "-a.test", "a-.test", "a b.test", "a*.test", "ü.test",
    "a" * 64 + ".test", ".".join(["abcdefg"] * 32), None, 7, b"mesh.test",
])
def test_canonical_refuses_what_the_store_cannot_hold(raw):
    assert names.canonical(raw) is None


def test_the_longest_text_name_is_253_octets():
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(longest) == 253 and names.canonical(longest) == longest
    assert names.canonical(longest + "b") is None


def test_within_is_label_aligned():
    assert names.within("mesh.test", "mesh.test")
    assert names.within("a.mesh.test", "mesh.test")
    assert not names.within("amesh.test", "mesh.test")
    assert not names.within("test", "mesh.test")


def test_reversed_key_puts_descendants_after_their_ancestor_prefix():
    key = names.reversed_key("slot-3.mb-ab.mesh.test")
    assert key == b"test.mesh.mb-ab.slot-3"
    assert key.startswith(names.reversed_key("mb-ab.mesh.test") + b".")
    assert names.from_reversed_key(key) == "slot-3.mb-ab.mesh.test"


@pytest.mark.parametrize("raw, expected", [
    ("Example.ORG.", "Example.ORG"),
    ("node-1.example.org", "node-1.example.org"),
    ("localhost", "localhost"),
])
def test_ldh_name_keeps_case_and_drops_one_root_dot(raw, expected):
    assert names.ldh_name(raw) == expected


@pytest.mark.parametrize("raw", [
    "", ".", "example.org..", "_dmp.example.org", "-a.org", "a-.org", "a..org", "é.org",
    "a" * 64 + ".org", None, 3,
])
def test_ldh_name_refuses_underscores_and_malformed_labels(raw):
    assert names.ldh_name(raw) is None


def test_same_name_ignores_case_and_one_root_dot():
    assert names.same_name("Mesh.Test.", "mesh.test")
    assert not names.same_name("mesh.test..", "mesh.test")
    assert not names.same_name("a.mesh.test", "mesh.test")


def test_drop_root_dot_drops_one():
    assert names.drop_root_dot("a.b.") == "a.b"
    assert names.drop_root_dot("a.b..") == "a.b."
    assert names.drop_root_dot("a.b") == "a.b"


_LABEL_CHARS = st.sampled_from("abz09_-.A")


@given(st.text(_LABEL_CHARS, min_size=1, max_size=80))
def test_the_wire_rule_is_the_text_rule_in_either_case(text):
    # OWNER_NAME_WIRE serves the DNS fast path: the labels of a name the wire carries match
    # it exactly when the name, lowercased, is canonical (labels of 1..63 bytes taken as
    # written, so an empty or too long label never matches).
    wire = b"".join(bytes((len(label) % 256,)) + label.encode()
                    for label in text.rstrip(".").split("."))
    lowered = text.lower().rstrip(".")
    matches = re.fullmatch(names.OWNER_NAME_WIRE, wire, re.DOTALL) is not None
    assert matches == (bool(lowered) and names.canonical(lowered) == lowered)


def test_folded_is_the_comparison_form_without_a_check():
    assert names.folded("Mesh.Test.") == "mesh.test"
    assert names.folded("mesh.test..") == "mesh.test"
    assert names.folded("Not A Name!") == "not a name!"
