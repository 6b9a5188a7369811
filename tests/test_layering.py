"""Architecture rules of docs/decisions.md §2, checked on the source with ``ast``.

Every module under ``dmfdns/`` must be assigned a layer by ``LAYER_RULES``; a module
may import only from its own layer or earlier ones. DESIGN's layer 0 is split in two here:
``proto`` stands strictly below the pure ``dns`` modules and imports nothing else of ours.
"""

import ast
import pathlib
import re
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "dmfdns"

PROTO, PURE, STORE, ADAPTERS, COMPOSITION = range(5)

# First matching pattern wins: (module-name regex, layer).
LAYER_RULES = [
    (r"dmfdns\.dns\.(server|update_handler|xfr_pump|notifier)$", ADAPTERS),
    (r"dmfdns\.__init__$", PROTO),
    (r"dmfdns\.proto\..+", PROTO),
    (r"dmfdns\.dns\..+", PURE),
    (r"dmfdns\.config_(values|sections)$", PURE),  # config values and sections (stdlib + proto)
    (r"dmfdns\.conn_table$", PURE),  # pure connection admission policy (DNS TCP and HTTP)
    (r"dmfdns\.store\..+", STORE),
    (r"dmfdns\.(http|sync|client|outbound)\..+", ADAPTERS),
    (r"dmfdns\.(twisted_private|tls_listen)$", ADAPTERS),
    (r"dmfdns\.(metrics|stall_probe|stall_trace|group_commit|slicing)$", ADAPTERS),
    (r"dmfdns\.commands\..+", COMPOSITION),
    (r"dmfdns\.(node|node_[a-z]+|config|config_files|cli|__main__)$", COMPOSITION),
    (r"dmfdns\.sd_notify$", COMPOSITION),  # the systemd notification protocol (serve)
]

# proto uses the standard library and these only (DESIGN section 2).
PROTO_THIRD_PARTY = ("cryptography", "zfec", "reedsolo")
# Third-party packages a layer may not use (the pure layers stay pure).
FORBIDDEN_THIRD_PARTY = {
    PURE: ("twisted", "lmdb", "prometheus_client"),
    STORE: ("twisted", "prometheus_client"),
}
LMDB_MODULES = re.compile(r"dmfdns\.store\.lmdb_[a-z]+$")   # the store on LMDB
# Wall-clock reads, by their full path; also caught bare (``datetime.now`` with the
# import out of sight) by their last two parts.
CLOCK_CALLS = {"time.time", "time.time_ns", "datetime.datetime.now",
               "datetime.datetime.utcnow", "datetime.datetime.today", "datetime.date.today"}
CLOCK_PAIRS = {tuple(path.split(".")[-2:]) for path in CLOCK_CALLS}


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts)


def layer_of(name: str):
    for pattern, layer in LAYER_RULES:
        if re.fullmatch(pattern, name):
            return layer
    return None


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def imported_names(tree: ast.AST, this: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = this.rsplit(".", node.level)[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield target, node
            for alias in node.names:
                yield f"{target}.{alias.name}", node


def resolve_internal(name: str):
    """The dmfdns module an import refers to (longest existing prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        path = PACKAGE.parent.joinpath(*parts)
        if path.with_suffix(".py").exists():
            return candidate
        if (path / "__init__.py").exists():
            return candidate + ".__init__"
        parts.pop()
    return None


def third_party_problem(this: str, layer, top: str):
    """Why module ``this`` may not import third-party package ``top``, or None."""
    if layer == PROTO:
        if top not in sys.stdlib_module_names and top not in PROTO_THIRD_PARTY:
            return f"{this} (proto) imports {top}: proto uses the stdlib, {PROTO_THIRD_PARTY}"
    elif top in FORBIDDEN_THIRD_PARTY.get(layer, ()):
        return f"{this} (layer {layer}) imports {top}"
    if top == "lmdb" and not LMDB_MODULES.match(this):
        return f"only dmfdns/store/lmdb_*.py may import lmdb ({this})"
    return None


def import_problems(this: str, source: str):
    """Each import of module ``this`` (given as ``source``) that breaks the layer map."""
    layer = layer_of(this)
    for target, node in imported_names(ast.parse(source), this):
        top = target.split(".")[0]
        if top == "dmfdns":
            internal = resolve_internal(target)
            if internal is None or internal == this:
                continue
            other = layer_of(internal)
            if other is None or other > layer:
                yield (f"{this} (layer {layer}) imports {internal} (layer {other}) "
                       f"at line {node.lineno}")
        elif (problem := third_party_problem(this, layer, top)) is not None:
            yield f"{problem} at line {node.lineno}"


def import_aliases(tree: ast.AST) -> dict:
    """Local name -> the full dotted path it was imported as."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def dotted_path(node: ast.Attribute, aliases: dict):
    """``a.b.c`` for an attribute chain on a plain name, the name resolved through the
    imports; None for chains on anything else (calls, subscripts)."""
    parts = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    if not isinstance(value, ast.Name):
        return None
    parts.append(aliases.get(value.id, value.id))
    return ".".join(reversed(parts))


def is_clock_read(path: str) -> bool:
    return path in CLOCK_CALLS or tuple(path.split(".")[-2:]) in CLOCK_PAIRS


def runtime_problems(this: str, source: str):
    """Global reactor, wall-clock and environment reads outside the modules allowed them."""
    tree = ast.parse(source)
    for target, node in imported_names(tree, this):
        if target in ("twisted.internet.reactor",) and this != "dmfdns.__main__":
            yield f"{this} imports the global reactor at line {node.lineno}"
    aliases = import_aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (path := dotted_path(node, aliases)):
            if is_clock_read(path) and this != "dmfdns.__main__":
                yield f"{this} reads the wall clock ({path}) at line {node.lineno}"
            if path in ("os.environ", "os.getenv", "os.environb") and this != "dmfdns.config":
                yield f"{this} reads the environment at line {node.lineno}"
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "time"):
            for alias in node.names:
                if alias.name in ("environ", "getenv", "time", "time_ns"):
                    allowed = "dmfdns.config" if node.module == "os" else "dmfdns.__main__"
                    if this != allowed:
                        yield f"{this} imports {node.module}.{alias.name} at line {node.lineno}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_module_has_a_layer(path):
    assert layer_of(module_name(path)) is not None, (
        f"{module_name(path)} is not in LAYER_RULES; add it to the map")


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_imports_respect_layers(path):
    assert list(import_problems(module_name(path), path.read_text())) == []


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_global_reactor_clock_and_environment(path):
    assert list(runtime_problems(module_name(path), path.read_text())) == []


def test_the_map_rejects_an_unknown_module():
    assert layer_of("dmfdns.helpers") is None
    assert layer_of("dmfdns.dns.server") == ADAPTERS
    assert layer_of("dmfdns.dns.respond") == PURE
    assert layer_of("dmfdns.dns.tsig") == PURE          # pure TSIG, shared by UPDATE and XFR
    assert layer_of("dmfdns.proto.names") == PROTO


@pytest.mark.parametrize("source", [
    "from ..dns import query",
    "from dmfdns.dns.lean import LeanPath",
    "from .. import dns",
    "from ..store import api",
    "import dnslib",
    "import twisted.internet.defer",
])
def test_proto_imports_nothing_above_it(source):
    assert list(import_problems("dmfdns.proto.admission", source)) != []


def test_proto_may_import_proto_the_stdlib_and_its_three_libraries():
    source = ("import hashlib\nimport zfec\nfrom . import names\nfrom .owners import slot\n"
              "from cryptography.hazmat.primitives import hashes\n")
    assert list(import_problems("dmfdns.proto.admission", source)) == []
    assert list(import_problems("dmfdns.dns.zone", "from ..proto import names")) == []


@pytest.mark.parametrize("source", [
    "import datetime\ndatetime.datetime.now()",
    "import datetime\ndatetime.datetime.utcnow()",
    "import datetime\ndatetime.date.today()",
    "import datetime as dt\ndt.datetime.today()",
    "from datetime import datetime\ndatetime.now()",
    "from datetime import datetime as wall\nwall.now()",
    "from datetime import date\ndate.today()",
    "import time\nstamp = time.time",
    "import time as t\nt.time_ns()",
    "from time import time",
    "datetime.now()",
])
def test_wall_clock_reads_are_caught(source):
    assert list(runtime_problems("dmfdns.proto.names", source)) != []
    assert list(runtime_problems("dmfdns.__main__", source)) == []


def test_injected_clocks_are_not_wall_clock_reads():
    source = ("import time\nimport datetime\ntime.monotonic()\nclock.seconds()\n"
              "datetime.datetime.fromtimestamp(now)\ndatetime.timedelta(seconds=1)\n")
    assert list(runtime_problems("dmfdns.proto.names", source)) == []


# The one outbound HTTP client (docs/decisions.md §2, layer 2): the user-side client and the
# sync workers reach nodes through ``dmfdns.outbound`` and never import the HTTP server.
OUTBOUND_ONLY = re.compile(r"dmfdns\.(client|sync)\..+")
OUTBOUND_HOME = re.compile(r"dmfdns\.(outbound\..+|twisted_private)")
# Twisted's private names dmfdns relies on; only the adapter module may touch them.
TWISTED_PRIVATE = {"_HTTP11ClientFactory", "_factory", "_respondToBadRequestAndDisconnect",
                   "_handlingRequest", "_connectedAddr"}
PRIVATE_ADAPTER = "dmfdns.twisted_private"


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_peers_are_reached_only_through_the_outbound_client(path):
    this = module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    for target, node in imported_names(tree, this):
        internal = resolve_internal(target) if target.startswith("dmfdns") else None
        if OUTBOUND_ONLY.fullmatch(this) and internal:
            assert not internal.startswith("dmfdns.http."), (
                f"{this} imports {internal} at line {node.lineno}; use dmfdns.outbound")
        if target.startswith("twisted.web.client.") and not OUTBOUND_HOME.fullmatch(this):
            assert False, f"{this} uses {target} at line {node.lineno}; use dmfdns.outbound"


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_private_twisted_api_only_in_the_adapter(path):
    this = module_name(path)
    if this == PRIVATE_ADAPTER:
        return
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        name = (node.attr if isinstance(node, ast.Attribute) else
                node.name if isinstance(node, (ast.FunctionDef, ast.alias)) else None)
        if name is None and isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("twisted"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{this} imports Twisted's private {private} ({node.lineno})"
        assert name not in TWISTED_PRIVATE, (
            f"{this} uses Twisted's private {name} at line {getattr(node, 'lineno', '?')}; "
            f"go through {PRIVATE_ADAPTER}")
