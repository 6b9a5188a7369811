"""The vendored vectors must stay byte-identical to ../shared/vectors/ when it exists."""

import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent / "vectors"
SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "vectors"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/vectors is not beside this checkout")
def test_copy_equals_shared():
    shared = {p.name: p.read_bytes() for p in SHARED.iterdir() if p.is_file()}
    assert shared, "shared vectors folder is empty"
    for name, data in shared.items():
        assert (HERE / name).read_bytes() == data, f"tests/vectors/{name} drifted"


def test_all_eight_vector_files_present():
    names = sorted(p.name for p in HERE.glob("*.json"))
    assert len(names) == 8, names
