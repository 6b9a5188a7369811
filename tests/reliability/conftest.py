"""The reliability suite's shared pieces: its scale and its figures.

``DMFDNS_RELIABILITY=full`` (set by ``tools/reliability``) runs every test at the issue's
full size (100,000 malformed UDP packets, 50 kill -9 cycles, ...); without it the bounded
CI size runs. ``DMFDNS_RELIABILITY_REPORT=FILE`` makes each test append its figures to FILE
as one JSON line, which ``tools/reliability`` turns into the table of docs/reliability.md.
"""

import json
import os
import sys
import dataclasses
import pathlib

import pytest
import pytest_twisted

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))   # attacks.py

FULL = os.environ.get("DMFDNS_RELIABILITY") == "full"


def scaled(ci: int, full: int) -> int:
    """The size of an attack: ``full`` under tools/reliability, else ``ci``."""
    return full if FULL else ci


@pytest.fixture
def figures(request):
    """``figures(**numbers)`` records what a test measured (for docs/reliability.md)."""
    path = os.environ.get("DMFDNS_RELIABILITY_REPORT")

    def record(**numbers):
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"test": request.node.name, **numbers}) + "\n")
    return record


@pytest.fixture
def node_with(tmp_path):
    """``node_with(section, **settings)`` → a node started on loopback with those keys of
    its ``[dns]`` or ``[http]`` section changed; every node is stopped at the end."""
    from node_support import node_config, start_node
    nodes = []

    def starter(section: str, **settings):
        config = node_config(tmp_path, tmp_path / f"data{len(nodes)}")
        changed = dataclasses.replace(getattr(config, section), **settings)
        nodes.append(start_node(dataclasses.replace(config, **{section: changed})))
        return nodes[-1]
    yield starter
    for node in nodes:
        pytest_twisted.blockon(node.stopService())
