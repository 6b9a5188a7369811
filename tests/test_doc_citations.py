"""Every document a comment cites is in the repository, and so is the section it names.

A reader of the repository alone must be able to follow ``docs/wire-format.md §4.2``: this
scans the source, operations and test files (and the docs themselves) for ``*.md`` paths and
resolves each against the repository root, the citing file's directory and ``docs/``. A
section number right after the path (``§4.2``, ``section 4.2``) must be the number of one of
that document's headings.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCANNED = ("dmfdns", "ops", "tests", "tools", "node", "docs", "zones", "README.md")
# The vectors are a byte-identical copy of the protocol's shared folder
# (tests/test_vectors_copy.py), whose README cites documents beside that folder.
VENDORED = ("tests/vectors/",)
THIS_FILE = pathlib.Path(__file__).resolve()

CITATION = re.compile(r"(?<![\w./-])((?:\.\./|\./)*[\w./-]*[\w-]\.md)\b")
SECTION = re.compile(r"\s*(?:§\s*|sections?\s+)(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#+\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


def scanned_files():
    for top in SCANNED:
        path = ROOT / top
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in found:
            rel = file.relative_to(ROOT).as_posix()
            if file == THIS_FILE or rel.startswith(VENDORED) or "__pycache__" in rel:
                continue
            yield file


def text_of(file: pathlib.Path):
    try:
        return file.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None          # binary files cite nothing


def documents_by_name():
    named = {}
    for file in scanned_files():
        if file.suffix == ".md":
            named.setdefault(file.name, []).append(file)
    return named


DOCUMENTS = documents_by_name()


def resolve(cited: str, citing: pathlib.Path):
    """The cited document, or None if it is not in the repository. A bare file name
    (a runbook named in a test, a link's text) is found wherever it is unique."""
    if cited.startswith("/"):
        return None
    for base in (citing.parent, ROOT, ROOT / "docs"):
        candidate = (base / cited).resolve()
        if candidate.is_file() and ROOT in candidate.parents:
            return candidate
    same_name = DOCUMENTS.get(cited, []) if "/" not in cited else []
    return same_name[0] if len(same_name) == 1 else None


def citation_problems(text: str, citing: pathlib.Path):
    """What in ``text`` (the contents of ``citing``) cites a document or a section that
    the repository does not have."""
    for match in CITATION.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        where = f"{citing.relative_to(ROOT)}:{line}"
        document = resolve(match.group(1), citing)
        if document is None:
            yield f"{where} cites {match.group(1)}, which is not in the repository"
            continue
        section = SECTION.match(text, match.end())
        if section and section.group(1) not in HEADING.findall(document.read_text()):
            yield f"{where} cites {match.group(1)} section {section.group(1)}, which it lacks"


@pytest.mark.parametrize("file", list(scanned_files()),
                         ids=lambda f: f.relative_to(ROOT).as_posix())
def test_cited_documents_and_sections_exist(file):
    text = text_of(file)
    if text is not None:
        assert list(citation_problems(text, file)) == []


CITING = ROOT / "dmfdns" / "proto" / "owners.py"


@pytest.mark.parametrize("text", [
    "(dmp-wire.md section 4.4)",
    "see ``reliability-notes.md`` §3.2",  # (docs/reliability.md exists)
    "(operators.md section 7)",
    "as ../reference/DESIGN.md says",
    "docs/wire-format.md §99",
    "docs/compatibility.md section 8.7",
])
def test_a_citation_of_something_missing_is_caught(text):
    assert len(list(citation_problems(text, CITING))) == 1


@pytest.mark.parametrize("text", [
    "(docs/wire-format.md §4.4)",
    "docs/decisions.md section 3.4, then",
    "[storage](storage.md) and docs/metrics.md",
    "the LMDB file data.mdb and lock.mdb",
    "/var/lib/dmfdns/data.mdb",
])
def test_a_citation_of_what_is_here_passes(text):
    assert list(citation_problems(text, CITING)) == []
