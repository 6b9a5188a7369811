"""Architecture rules of DESIGN.md section 2, checked on the source with ``ast``.

Every module under ``dmfdns/`` must be assigned a layer by ``LAYER_RULES``; a module
may import only from its own layer or earlier ones.
"""

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "dmfdns"

# First matching pattern wins: (module-name regex, layer).
LAYER_RULES = [
    (r"dmfdns\.dns\.server$", 2),
    (r"dmfdns(\.proto)?(\..*)?\.__init__$", 0),
    (r"dmfdns\.proto\..+", 0),
    (r"dmfdns\.dns\..+", 0),
    (r"dmfdns\.store\..+", 1),
    (r"dmfdns\.(http|sync|client)\..+", 2),
    (r"dmfdns\.metrics$", 2),
    (r"dmfdns\.commands\..+", 3),
    (r"dmfdns\.config_values$", 0),  # pure readers of config values (stdlib + proto)
    (r"dmfdns\.(node|node_http|node_cluster|config|cli|__main__)$", 3),
]

# Third-party packages a layer may not use (layer 0 stays pure).
FORBIDDEN_THIRD_PARTY = {
    0: ("twisted", "lmdb", "prometheus_client"),
    1: ("twisted", "prometheus_client"),
}
LMDB_MODULE = "dmfdns.store.lmdb_store"
CLOCK_CALLS = {("time", "time"), ("time", "time_ns"), ("datetime", "now"),
               ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}


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


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_module_has_a_layer(path):
    assert layer_of(module_name(path)) is not None, (
        f"{module_name(path)} is not in LAYER_RULES; add it to the map")


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_imports_respect_layers(path):
    this = module_name(path)
    layer = layer_of(this)
    tree = ast.parse(path.read_text(), filename=str(path))
    for target, node in imported_names(tree, this):
        top = target.split(".")[0]
        if top == "dmfdns":
            internal = resolve_internal(target)
            if internal is None or internal == this:
                continue
            other = layer_of(internal)
            assert other is not None and other <= layer, (
                f"{this} (layer {layer}) imports {internal} (layer {other}) at line {node.lineno}")
        elif top in FORBIDDEN_THIRD_PARTY.get(layer, ()):
            assert False, f"{this} (layer {layer}) imports {target} at line {node.lineno}"
        if top == "lmdb":
            assert this == LMDB_MODULE, f"only {LMDB_MODULE} may import lmdb ({this})"


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_global_reactor_clock_and_environment(path):
    this = module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    for target, node in imported_names(tree, this):
        if target in ("twisted.internet.reactor",) and this != "dmfdns.__main__":
            assert False, f"{this} imports the global reactor at line {node.lineno}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = (node.value.id, node.attr)
            if pair in CLOCK_CALLS:
                assert this == "dmfdns.__main__", (
                    f"{this} reads the wall clock ({'.'.join(pair)}) at line {node.lineno}")
            if pair in (("os", "environ"), ("os", "getenv"), ("os", "environb")):
                assert this == "dmfdns.config", (
                    f"{this} reads the environment at line {node.lineno}")
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "time"):
            for alias in node.names:
                if alias.name in ("environ", "getenv", "time", "time_ns"):
                    allowed = "dmfdns.config" if node.module == "os" else "dmfdns.__main__"
                    assert this == allowed, (
                        f"{this} imports {node.module}.{alias.name} at line {node.lineno}")


def test_the_map_rejects_an_unknown_module():
    assert layer_of("dmfdns.helpers") is None
    assert layer_of("dmfdns.dns.server") == 2
    assert layer_of("dmfdns.dns.respond") == 0
    assert layer_of("dmfdns.dns.tsig") == 0          # pure TSIG, shared by UPDATE and XFR
